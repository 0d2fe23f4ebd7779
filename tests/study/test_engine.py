"""The experiment engine on a small real slice of MNIST."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from synapses_study.measures.topology import center_ratio, trend
from synapses_study.runs.run_dir import METRIC_COLUMNS, RunDir
from synapses_study.runs.run_files import load_model_state, read_pruning, read_topology
from synapses_study.setup.config import ConfigError, ExperimentConfig
from synapses_study.setup.data import MEAN, STD, prepare_data
from synapses_study.training.build import build_model, build_optimizer
from synapses_study.training.decay import WeightDecayPolicy
from synapses_study.training.engine import evaluate, run_experiment, train_epoch


def _read(run_dir):
    metrics = pd.read_csv(run_dir / "metrics.csv.xz")
    counts = read_topology(run_dir / "topology.npz")
    return metrics, {"pixel_counts": counts, "trend": trend(counts)}


def test_results_layout(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=2, weight_decay=1e-3)
    run_dir = run_experiment(config, tmp_path, data=small_mnist, progress=False)
    assert run_dir == tmp_path / config.run_id()
    assert ExperimentConfig.from_json(run_dir / "config.json") == config
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["threads"] == 1 and env["torch"] == torch.__version__
    metrics, topology = _read(run_dir)
    assert tuple(metrics.columns) == METRIC_COLUMNS
    assert metrics["epoch"].tolist() == [1, 2]
    assert metrics[["train_acc", "test_acc"]].stack().between(0, 1).all()
    counts = topology["pixel_counts"]
    assert counts.shape == (3, 784)
    assert (counts.sum(axis=1) == 14256).all()  # every connection of the first layer, every epoch
    assert np.allclose(topology["trend"], trend(counts))
    assert np.allclose(metrics["center_ratio"], center_ratio(counts[1:]))
    assert not (run_dir / "checkpoint.pt").exists()
    assert RunDir(run_dir).is_finished(config)


def test_initial_topology_is_the_constructed_one(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=1)
    _, topology = _read(run_experiment(config, tmp_path, data=small_mnist, progress=False))
    torch.manual_seed(config.seed)
    model = build_model(config, torch.Generator().manual_seed(config.seed))
    expected = torch.bincount(model.set_layers[0].connections[:, 0], minlength=784).numpy()
    assert np.array_equal(topology["pixel_counts"][0], expected)


def test_same_config_gives_bit_identical_results(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=2, weight_decay=1e-4, l1=1e-6)
    a = run_experiment(config, tmp_path / "a", data=small_mnist, progress=False)
    b = run_experiment(config, tmp_path / "b", data=small_mnist, progress=False)
    (ma, ta), (mb, tb) = _read(a), _read(b)
    pd.testing.assert_frame_equal(ma.drop(columns="seconds"), mb.drop(columns="seconds"), check_exact=True)
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)


def test_a_run_trains_at_its_thread_count_and_gives_the_callers_back(tmp_path, small_mnist, monkeypatch):
    from synapses_study.training import engine

    real, seen = engine.train_epoch, []

    def counting(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "train_epoch", counting)
    torch.set_num_threads(2)  # conftest restores the suite's own afterwards
    run_experiment(ExperimentConfig(epochs=1, threads=1), tmp_path / "done", data=small_mnist, progress=False)
    assert seen == [1] and torch.get_num_threads() == 2

    def failing(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(engine, "train_epoch", failing)
    with pytest.raises(RuntimeError, match="interrupted"):  # a run that stops gives the threads back too
        run_experiment(ExperimentConfig(epochs=1, threads=1), tmp_path / "failed", data=small_mnist, progress=False)
    assert torch.get_num_threads() == 2


def test_seeds_differ(tmp_path, small_mnist):
    a = run_experiment(ExperimentConfig(epochs=1, seed=0), tmp_path, data=small_mnist, progress=False)
    b = run_experiment(ExperimentConfig(epochs=1, seed=1), tmp_path, data=small_mnist, progress=False)
    assert not np.array_equal(_read(a)[1]["pixel_counts"], _read(b)[1]["pixel_counts"])


@pytest.mark.parametrize(
    "config",
    [
        ExperimentConfig(epochs=3, weight_decay=1e-3),
        ExperimentConfig(
            epochs=3, model="EvolNet", evolution="pass", evolution_proba=0.05, reset_optimizer_state=False
        ),
        ExperimentConfig(
            epochs=3,
            optimizer="adam",
            lr=1e-3,
            regrowth="near_parents",
            decay_mode="decoupled",
            weight_decay=1e-4,
            weight_decay_end=1e-3,
            record_pruning=True,
        ),
    ],
    ids=["sparsenet", "evolnet", "adam-parents-decoupled"],
)
def test_interrupted_run_resumes_to_identical_files(tmp_path, small_mnist, config):
    straight = run_experiment(config, tmp_path / "straight", data=small_mnist, progress=False)
    resumed = run_experiment(config, tmp_path / "resumed", data=small_mnist, progress=False, stop_after=1)
    assert (resumed / "checkpoint.pt").exists() and not RunDir(resumed).is_finished(config)
    assert len(pd.read_csv(resumed / "metrics.csv")) == 1
    run_experiment(config, tmp_path / "resumed", data=small_mnist, progress=False)
    (ma, ta), (mb, tb) = _read(straight), _read(resumed)
    pd.testing.assert_frame_equal(ma.drop(columns="seconds"), mb.drop(columns="seconds"), check_exact=True)
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)
    for name in ("config.json", "model.pt") + (("pruning.npz",) if config.record_pruning else ()):
        assert (straight / name).read_bytes() == (resumed / name).read_bytes(), name


def test_finished_run_is_a_no_op(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=1)
    run_dir = run_experiment(config, tmp_path, data=small_mnist, progress=False)
    stamp = (run_dir / "metrics.csv.xz").stat().st_mtime_ns
    assert run_experiment(config, tmp_path, data=small_mnist, progress=False) == run_dir
    assert (run_dir / "metrics.csv.xz").stat().st_mtime_ns == stamp


def test_weight_decay_shrinks_weights_and_schedules_are_recorded(tmp_path, small_mnist):
    plain = run_experiment(ExperimentConfig(epochs=2), tmp_path, data=small_mnist, progress=False)
    decayed_config = ExperimentConfig(epochs=2, weight_decay=0.05, weight_decay_end=0.1)
    decayed = run_experiment(decayed_config, tmp_path, data=small_mnist, progress=False)
    norms = [load_model_state(d / "model.pt")["readout.weight"].norm().item() for d in (plain, decayed)]
    assert norms[1] < norms[0]
    assert pd.read_csv(decayed / "metrics.csv.xz")["decay_in_force"].tolist() == pytest.approx([0.05, 0.1])


def test_init_from_starts_from_a_finished_run(tmp_path, small_mnist):
    first = run_experiment(ExperimentConfig(epochs=1), tmp_path, data=small_mnist, progress=False)
    second = ExperimentConfig(epochs=1, seed=5, evolution="off", lr=1e-12, init_from=first.name)
    run_dir = run_experiment(second, tmp_path, data=small_mnist, progress=False)
    a, b = load_model_state(first / "model.pt"), load_model_state(run_dir / "model.pt")
    assert torch.equal(a["set_layers.0.connections"], b["set_layers.0.connections"])
    missing = ExperimentConfig(epochs=1, init_from="no_such_run")
    with pytest.raises(ConfigError, match="init_from='no_such_run': no finished run"):
        run_experiment(missing, tmp_path, data=small_mnist, progress=False)
    assert not (tmp_path / missing.run_id()).exists()  # refused before anything is created


def test_kill_between_results_and_checkpoint_loses_only_that_epoch(tmp_path, small_mnist):
    # Results are written before the checkpoint; a kill in between leaves the results one
    # epoch ahead. Simulated by putting back the epoch-1 checkpoint after epoch 2.
    config = ExperimentConfig(epochs=3, weight_decay=1e-3)
    straight = run_experiment(config, tmp_path / "straight", data=small_mnist, progress=False)
    run_dir = run_experiment(config, tmp_path / "killed", data=small_mnist, progress=False, stop_after=1)
    epoch_1 = (run_dir / "checkpoint.pt").read_bytes()
    run_experiment(config, tmp_path / "killed", data=small_mnist, progress=False, stop_after=2)
    (run_dir / "checkpoint.pt").write_bytes(epoch_1)
    run_experiment(config, tmp_path / "killed", data=small_mnist, progress=False)
    (ma, ta), (mb, tb) = _read(straight), _read(run_dir)
    pd.testing.assert_frame_equal(ma.drop(columns="seconds"), mb.drop(columns="seconds"), check_exact=True)
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)


def test_record_pruning(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=2, weight_decay=1e-3, record_pruning=True)
    run_dir = run_experiment(config, tmp_path, data=small_mnist, progress=False)
    pruned, mass = read_pruning(run_dir / "pruning.npz")
    assert pruned.shape == mass.shape == (2, 784)
    state = load_model_state(run_dir / "model.pt")
    first_pruned = state["set_layers.0.pruned"]
    assert pruned[-1].sum() == first_pruned.sum() > 0.25 * 14256
    assert np.array_equal(
        pruned[-1], np.bincount(state["set_layers.0.connections"][first_pruned, 0].long(), minlength=784)
    )
    # after pruning, the pruned weights are zero: the mass that is left is the mass of the kept ones
    weights = state["set_layers.0.weight"].double().abs()
    left = (
        torch.zeros(784, dtype=torch.float64)
        .index_add_(0, state["set_layers.0.connections"][:, 0].long(), weights)
        .numpy()
    )
    untouched = pruned[-1] == 0
    assert np.allclose(mass[-1][untouched], left[untouched], rtol=2.0**-11)  # kept as float16
    assert (mass[-1] >= left * (1 - 2.0**-11) - 1e-5).all()
    with pytest.raises(Exception, match="record_pruning needs evolution='epoch'"):
        ExperimentConfig(model="EvolNet", evolution="pass", evolution_proba=0.1, record_pruning=True)


def test_unit_inputs_make_blank_pixels_zero(small_mnist):

    standard = prepare_data(small_mnist, train_size=100, test_size=50)
    unit = prepare_data(small_mnist, inputs="unit", train_size=100, test_size=50)
    assert standard.train_x.shape == unit.train_x.shape == (100, 784) and unit.test_x.shape == (50, 784)
    assert unit.train_x.min().item() == 0.0 and unit.train_x.max().item() == 1.0
    blank = standard.train_x == standard.train_x.min()
    assert (unit.train_x[blank] == 0).all() and (unit.train_x[~blank] > 0).all()
    assert torch.equal(standard.train_y, unit.train_y)
    assert small_mnist.train_x.min().item() < 0  # the shared tensors are not modified
    assert "unit" in ExperimentConfig(inputs="unit").run_id()


# ---------------------------------------------------------------------------- other shapes
def test_hidden_widths_and_per_layer_epsilon_shape_the_net():
    config = ExperimentConfig(hidden=(300, 200, 100), epsilon=(20, 10, 5))
    model = build_model(config, torch.Generator().manual_seed(0))
    shapes = [(layer.in_features, layer.out_features, layer.epsilon) for layer in model.set_layers]
    assert shapes == [(784, 300, 20.0), (300, 200, 10.0), (200, 100, 5.0)]
    assert model.readout.in_features == 100 and model(torch.zeros(3, 784)).shape == (3, 10)


def test_dropout_acts_in_training_only():
    model = build_model(ExperimentConfig(dropout=0.5), torch.Generator().manual_seed(0))
    x = torch.randn(8, 784)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_scaled_inputs_are_standardised_scale_with_blank_at_zero(small_mnist):
    scaled = prepare_data(small_mnist, inputs="scaled")
    blank = small_mnist.train_x == small_mnist.train_x.min()
    assert (scaled.train_x[blank] == 0).all()
    # the same spread as the standardised inputs: one inked step is the same size
    torch.testing.assert_close(scaled.train_x, (small_mnist.train_x * STD + MEAN).clamp(0, 1) / STD)
    torch.testing.assert_close(
        scaled.train_x - small_mnist.train_x, torch.full_like(scaled.train_x, MEAN / STD), atol=1e-5, rtol=0
    )


def test_dense_baseline_trains_through_the_engine_with_a_uniform_topology(tmp_path, small_mnist):
    config = ExperimentConfig(model="Dense", evolution="off", hidden=(64, 32), epochs=2)
    run_dir = run_experiment(config, tmp_path, data=small_mnist, progress=False)
    metrics, topology = _read(run_dir)
    assert (topology["pixel_counts"] == 64).all()  # every pixel feeds every first-layer unit
    assert (metrics["center_ratio"] == 1.0).all()
    assert metrics["train_loss"].iloc[1] < metrics["train_loss"].iloc[0] and metrics["test_acc"].iloc[-1] > 0.2
    state = load_model_state(run_dir / "model.pt")
    assert state["hidden_layers.0.weight"].shape == (64, 784)


def test_topology_from_keeps_the_source_connections_fixed_with_fresh_weights(tmp_path, small_mnist):
    source_dir = run_experiment(ExperimentConfig(epochs=2), tmp_path, data=small_mnist, progress=False)
    source = load_model_state(source_dir / "model.pt")
    config = ExperimentConfig(epochs=2, seed=1, evolution="off", topology_from=source_dir.name)
    fresh = build_model(config, torch.Generator().manual_seed(config.seed))
    run_dir = run_experiment(config, tmp_path, data=small_mnist, progress=False)
    trained = load_model_state(run_dir / "model.pt")
    for i in range(2):
        assert torch.equal(trained[f"set_layers.{i}.connections"], source[f"set_layers.{i}.connections"])
    assert not torch.equal(trained["set_layers.0.weight"], source["set_layers.0.weight"])
    counts = read_topology(run_dir / "topology.npz")
    assert (counts == counts[0]).all()  # fixed over the epochs
    assert not torch.equal(fresh.set_layers[0].connections, source["set_layers.0.connections"])


def test_topology_layers_take_only_the_named_layers_from_the_source(tmp_path, small_mnist):
    source_dir = run_experiment(ExperimentConfig(epochs=2), tmp_path, data=small_mnist, progress=False)
    source = load_model_state(source_dir / "model.pt")
    config = ExperimentConfig(epochs=2, seed=1, evolution="off", topology_from=source_dir.name, topology_layers=(0,))
    assert (
        "_fixed-l0_" in config.run_id()
        and config.run_id()
        != ExperimentConfig(epochs=2, seed=1, evolution="off", topology_from=source_dir.name).run_id()
    )
    fresh = build_model(config, torch.Generator().manual_seed(config.seed))
    trained = load_model_state(run_experiment(config, tmp_path, data=small_mnist, progress=False) / "model.pt")
    assert torch.equal(trained["set_layers.0.connections"], source["set_layers.0.connections"])
    # the second layer keeps its own random connections, drawn as in a run without topology_from
    assert torch.equal(trained["set_layers.1.connections"], fresh.set_layers[1].connections)
    assert not torch.equal(trained["set_layers.1.connections"], source["set_layers.1.connections"])


def test_topology_from_a_missing_run_is_refused_before_anything_is_written(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=1, evolution="off", topology_from="nowhere")
    with pytest.raises(ConfigError, match="topology_from='nowhere'"):
        run_experiment(config, tmp_path, data=small_mnist, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_pruning_counts_without_weight_mass_are_recorded_and_resume(tmp_path, small_mnist):
    """record_weight_mass=False keeps the pruned counts only (a quarter of the file size):
    the counts equal a full record's, and an interrupted run resumes to the same file."""
    full = ExperimentConfig(epochs=3, record_pruning=True)
    counts_only = ExperimentConfig(epochs=3, record_pruning=True, record_weight_mass=False)
    full_dir = run_experiment(full, tmp_path / "full", data=small_mnist, progress=False)
    straight = run_experiment(counts_only, tmp_path / "straight", data=small_mnist, progress=False)
    run_experiment(counts_only, tmp_path / "resumed", data=small_mnist, progress=False, stop_after=2)
    resumed = run_experiment(counts_only, tmp_path / "resumed", data=small_mnist, progress=False)
    pruned, mass = read_pruning(straight / "pruning.npz")
    assert mass is None and np.array_equal(pruned, read_pruning(full_dir / "pruning.npz")[0])
    assert (straight / "pruning.npz").read_bytes() == (resumed / "pruning.npz").read_bytes()
    assert np.isnan(RunDir(straight).pruning()[1]).all()
    with pytest.raises(ConfigError, match="record_weight_mass applies with record_pruning only"):
        ExperimentConfig(record_weight_mass=False)


def _fresh_trainee(config):
    torch.manual_seed(config.seed)
    model = build_model(config, torch.Generator().manual_seed(config.seed))
    return model, build_optimizer(config, model, WeightDecayPolicy.of(config))


def test_epoch_and_evaluation_sums_are_the_float_sums_of_the_batches_bit_for_bit(small_mnist):
    # The engine sums losses where the data is (no GPU sync per batch), in float64: the same
    # numbers, to the last bit, as summing each batch's loss.item() in Python, which the
    # committed runs were made with.
    config = ExperimentConfig(epochs=1, train_size=1000, test_size=500)
    data = prepare_data(small_mnist, config.train_size, config.test_size)
    model, optimizer = _fresh_trainee(config)
    loss, acc = train_epoch(
        model, optimizer, data, 128, WeightDecayPolicy.of(config), 1, torch.Generator().manual_seed(7)
    )
    test_loss, test_acc = evaluate(model, data.test_x, data.test_y, 128)

    model, optimizer = _fresh_trainee(config)
    model.train()
    order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(7))
    batches = list(zip(data.train_x[order].split(128), data.train_y[order].split(128)))
    total, correct = 0.0, 0
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        output = model(x)
        batch_loss = F.nll_loss(output, y)
        batch_loss.backward()
        optimizer.step()
        total, correct = total + batch_loss.item(), correct + int((output.argmax(1) == y).sum())
    assert (loss, acc) == (total / len(batches), correct / len(data.train_y))
    model.eval()
    with torch.no_grad():
        outputs = [(model(x), y) for x, y in zip(data.test_x.split(128), data.test_y.split(128))]
    expected_loss = 0.0
    for output, y in outputs:
        expected_loss += F.nll_loss(output, y, reduction="sum").item()
    assert test_loss == expected_loss / len(data.test_y)
    assert test_acc == sum(int((o.argmax(1) == y).sum()) for o, y in outputs) / len(data.test_y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_cuda_run_without_cuda_is_refused_before_anything_is_written(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=1, device="cuda")
    with pytest.raises(ConfigError, match="device='cuda': torch sees 0 CUDA device"):
        run_experiment(config, tmp_path, data=small_mnist, progress=False)
    assert not (tmp_path / config.run_id() / "config.json").exists()


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
def test_a_cuda_run_starts_from_the_cpu_runs_network_and_writes_the_same_files(tmp_path, small_mnist):
    cpu = ExperimentConfig(epochs=2, weight_decay=1e-3, train_size=2000)
    cuda = cpu.replace(device="cuda")
    a = run_experiment(cpu, tmp_path, data=small_mnist, progress=False)
    b = run_experiment(cuda, tmp_path, data=small_mnist, progress=False)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    (_, ta), (mb, tb) = _read(a), _read(b)
    assert np.array_equal(ta["pixel_counts"][0], tb["pixel_counts"][0])  # the same initial draws
    assert tuple(mb.columns) == METRIC_COLUMNS and mb["test_acc"].between(0, 1).all()
    assert json.loads((b / "environment.json").read_text())["gpu"] == torch.cuda.get_device_name()
    assert load_model_state(b / "model.pt")["set_layers.0.weight"].device.type == "cpu"


@needs_cuda
@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["plain", "dropout"])
def test_an_interrupted_cuda_run_resumes_to_identical_results(tmp_path, small_mnist, dropout):
    config = ExperimentConfig(epochs=3, weight_decay=1e-3, train_size=2000, dropout=dropout, device="cuda")
    straight = run_experiment(config, tmp_path / "straight", data=small_mnist, progress=False)
    resumed = run_experiment(config, tmp_path / "resumed", data=small_mnist, progress=False, stop_after=1)
    run_experiment(config, tmp_path / "resumed", data=small_mnist, progress=False)
    (ma, ta), (mb, tb) = _read(straight), _read(resumed)
    pd.testing.assert_frame_equal(ma.drop(columns="seconds"), mb.drop(columns="seconds"), check_exact=True)
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)


def test_the_cuda_tests_are_selected_by_their_marker():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-m",
            "cuda",
            "tests/study/test_engine.py",
            "-p",
            "no:cacheprovider",
        ],
        cwd=root,
        capture_output=True,
        text=True,
    ).stdout
    selected = {line.split("::")[1].split("[")[0] for line in listed.splitlines() if "::" in line}
    assert selected == {
        "test_a_cuda_run_starts_from_the_cpu_runs_network_and_writes_the_same_files",
        "test_an_interrupted_cuda_run_resumes_to_identical_results",
    }


def test_the_study_uses_no_deprecated_spelling_of_the_library(tmp_path, small_mnist):
    import warnings

    from synapses.deprecation import forget_warnings

    forget_warnings()
    configs = [
        ExperimentConfig(epochs=2, regrowth="near_parents", train_size=500, test_size=100),
        ExperimentConfig(
            model="EvolNet", evolution="pass", evolution_proba=0.2, epochs=1, train_size=500, test_size=100
        ),
    ]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="synapses: .* is deprecated", category=FutureWarning)
        for config in configs:
            run_experiment(config, tmp_path, data=small_mnist, progress=False)
    forget_warnings()
