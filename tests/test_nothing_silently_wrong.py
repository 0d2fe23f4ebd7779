"""Damage and misuse that used to pass silently: each becomes a correct result or a
one-line refusal that names the value and the way out. Grouped by class: finished runs
are verified, the write-up's markers are parsed strictly, sweep files mean what they say."""

import errno
import json
import shutil
from pathlib import Path

import pytest

from synapses_study.reading.results import load_runs
from synapses_study.runs import run_files
from synapses_study.runs.run_dir import RunDir
from synapses_study.runs.run_files import DamagedFileError, save_checkpoint
from synapses_study.setup.config import ConfigError, ExperimentConfig
from synapses_study.setup.sweep_file import load_sweep
from synapses_study.training.engine import run_experiment
from synapses_study.training.sweep import main as sweep_main
from synapses_study.writeup import report
from synapses_study.writeup.markers import MarkerError, parse_markers


# ---------------------------------------------------------------------------- finished runs
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mnist):
    from synapses_study.setup.data import MNISTTensors

    small = MNISTTensors(mnist.train_x[:1000], mnist.train_y[:1000], mnist.test_x[:200], mnist.test_y[:200])
    root = tmp_path_factory.mktemp("finished")
    config = ExperimentConfig(epochs=2, record_pruning=True, record_weight_mass=False)
    return config, run_experiment(config, root, data=small, progress=False), small


@pytest.fixture
def run_copy(finished_run, tmp_path):
    config, path, small = finished_run
    copy = tmp_path / "results" / path.name
    shutil.copytree(path, copy)
    return config, RunDir(copy), small


def _truncate(path, keep=0.5):
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda d: _truncate(d.topology_file), "topology.npz does not match manifest.json"),
        (lambda d: _truncate(d.pruning_file), "pruning.npz does not match manifest.json"),
        (
            lambda d: d.config_file.write_text(d.config_file.read_text().replace('"lr": 0.01', '"lr": 0.02')),
            "config.json does not match manifest.json",
        ),
        (lambda d: _truncate(d.metrics_file, 0.9), "metrics.csv.xz does not match manifest.json"),
        (lambda d: d.model_file.unlink(), "model.pt is missing"),
        (lambda d: d.manifest_file.write_text("{not json"), "manifest.json is damaged"),
    ],
    ids=[
        "truncated-topology",
        "truncated-pruning",
        "edited-config",
        "missing-metrics-row",
        "no-model",
        "damaged-manifest",
    ],
)
def test_a_damaged_finished_run_is_never_done_nor_retrained(run_copy, damage, problem):
    config, folder, small = run_copy
    damage(folder)
    assert folder.problem(config).startswith(problem) and folder.state(config) == "damaged"
    before = {p.name: p.read_bytes() for p in folder.path.iterdir()}
    with pytest.raises(DamagedFileError, match=f"{problem}.*delete the folder to rerun"):
        run_experiment(config, folder.path.parent, data=small, progress=False)
    assert {p.name: p.read_bytes() for p in folder.path.iterdir()} == before  # nothing trained over it


def test_readers_refuse_an_edited_finished_run(run_copy):
    config, folder, _ = run_copy
    assert len(load_runs([config], folder.path.parent)) == 2
    folder.config_file.write_text(folder.config_file.read_text().replace('"lr": 0.01', '"lr": 0.02'))
    with pytest.raises(DamagedFileError, match="config.json does not match manifest.json"):
        load_runs([config], folder.path.parent)


def test_a_run_killed_between_sealing_and_dropping_its_checkpoint_is_done_and_tidied(run_copy):
    config, folder, small = run_copy
    save_checkpoint(folder.checkpoint_file, {"model": {}, "epoch": 2}, config.run_id(), 2)
    assert folder.state(config) == "done"
    run_experiment(config, folder.path.parent, data=small, progress=False)
    assert not folder.checkpoint_file.exists()


def test_sweep_dry_run_reports_a_damaged_run_and_goes_on(run_copy, tmp_path, capsys):
    config, folder, _ = run_copy
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "base: {epochs: 2, record_pruning: true, record_weight_mass: false, train_size: 1000}\ngrid: {seed: [0, 1]}\n"
    )
    # the sweep's seed-0 run is the damaged copy under the sweep's run id
    sweep_config = load_sweep(sweep).runs[0].config
    damaged = folder.path.parent / sweep_config.run_id()
    shutil.copytree(folder.path, damaged)
    _truncate(damaged / "topology.npz")
    assert sweep_main([str(sweep), "--dry-run", "--results-dir", str(folder.path.parent)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(sweep_config.run_id()))
    assert row.split()[1] == "damaged" and ("does not match manifest.json" in row or "is not this run's" in row)
    assert "1 new, 1 damaged" in out


def test_sweep_dry_run_names_a_damaged_metrics_file_of_a_partial_run(run_copy, tmp_path, capsys):
    config, folder, _ = run_copy
    sweep = tmp_path / "s.yaml"
    sweep.write_text("base: {epochs: 2, record_pruning: true, record_weight_mass: false}\n")
    folder.manifest_file.unlink()
    save_checkpoint(folder.checkpoint_file, {"model": {}, "epoch": 1}, config.run_id(), 1)
    _truncate(folder.path / "metrics.csv.xz")
    assert sweep_main([str(sweep), "--dry-run", "--results-dir", str(folder.path.parent)]) == 0
    out = capsys.readouterr().out
    assert "metrics.csv.xz is damaged" in out and "resume" in out


def test_dry_run_marks_a_run_whose_source_is_missing_as_blocked(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("base: {epochs: 2, evolution: 'off', topology_from: sparsenet_e2_wd0_s0_nothere}\n")
    assert sweep_main([str(sweep), "--dry-run", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "blocked" in out and "needs sparsenet_e2_wd0_s0_nothere, which is not a finished run there" in out


def test_sweep_time_limit_must_be_positive(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("base: {epochs: 2}\n")
    with pytest.raises(SystemExit) as info:
        sweep_main([str(sweep), "--time", "0"])
    assert info.value.code == 2 and "--time must be at least 1 minute" in capsys.readouterr().err


def test_the_committed_results_are_all_sealed_and_verify():
    # every committed folder is a finished run whose files verify, or a run stopped at a
    # session's end (its checkpoint committed for the next to resume): never damaged
    from synapses_study.setup.paths import RESULTS

    folders = [p for p in RESULTS.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert folders
    for path in folders:
        folder = RunDir(path)
        config = folder.config()
        assert folder.state(config) in ("done", "partial"), (path.name, folder.problem(config))
        if folder.state(config) == "partial":
            assert folder.checkpoint(config.run_id())["epoch"] < config.epochs


# ---------------------------------------------------------------------------- the write-up's markers
GOOD = (
    "Intro <!--v fact:x -->1<!--/v--> and\n<!-- table: sweep155 -->\n| a |\n<!-- /table -->\nend `<!--v not a marker "
    "-->` done\n"
)


def test_markers_pair_up_and_code_spans_are_text():
    spans = parse_markers(GOOD)
    assert [(s.kind, s.name) for s in spans] == [("value", "fact:x"), ("table", "sweep155")]
    assert (
        GOOD[spans[0].body_start : spans[0].body_end] == "1"
        and GOOD[spans[1].body_start : spans[1].body_end] == "| a |\n"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "a <!--v fact:x -->1 and more prose\n<!--v fact:y -->2<!--/v-->",
            "line 2: .* opens a marker inside the value 'fact:x' opened at line 1",
        ),
        ("<!-- table: sweep155 -->\n| a |\nprose that must survive\n", "line 1: the table 'sweep155' is never closed"),
        ("prose <!--/v--> more", "line 1: '<!--/v-->' closes a value, but nothing is open"),
        (
            "<!-- tabel: sweep155 -->\n| a |\n<!-- /table -->\n",
            "line 1: '<!-- tabel: sweep155 -->' looks like a marker",
        ),
        ("x <!--v fact:x -->1<!--/ v-->", "looks like a marker"),
        ("<!-- table: sweep155 --> trailing\n<!-- /table -->\n", "must end its line"),
    ],
    ids=[
        "value-unclosed",
        "table-unclosed",
        "close-without-open",
        "mistyped-table",
        "mistyped-close",
        "table-not-on-own-line",
    ],
)
def test_bad_markers_are_refused_with_the_line(text, problem):
    with pytest.raises(MarkerError, match=problem):
        parse_markers(text)


def test_report_refuses_bad_markers_before_writing_anything(tmp_path, capsys):
    page = tmp_path / "page.md"
    text = "keep this\n<!--v fact:welch_test_acc_1000 -->p = 0.3\nand this prose too\n"
    page.write_text(text)
    with pytest.raises(SystemExit) as info:
        report.main([str(page)])
    assert info.value.code == 2 and "is never closed" in capsys.readouterr().err
    assert page.read_text() == text


def test_report_rewrites_atomically_and_a_full_disk_leaves_the_old_text(tmp_path, monkeypatch, capsys):
    page = tmp_path / "page.md"
    page.write_text("no markers here\n")

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_files.os, "write", full)
    with pytest.raises(SystemExit) as info:
        report.main([str(page)])
    assert info.value.code == 2 and "no space left on the device" in capsys.readouterr().err
    assert page.read_text() == "no markers here\n" and [p.name for p in tmp_path.iterdir()] == ["page.md"]


# ---------------------------------------------------------------------------- sweep files
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("grid: {seed: [0]}\ngrid: {seed: [1]}\n", "key 'grid' appears twice in one mapping; keep one at line 2"),
        ("base: {weight_decay: 0.0, weight_decay: 1.0e-3}\n", "key 'weight_decay' appears twice"),
        ("grid: {seed: [010, 011]}\n", "'010' has a leading zero, which YAML reads as octal; write 10"),
    ],
    ids=["grid-twice", "field-twice", "octal-seed"],
)
def test_sweep_files_that_yaml_would_misread_are_refused(tmp_path, text, problem):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_sweep(path)


def test_json_sweep_with_a_key_twice_is_refused(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"base": {"epochs": 2}}).replace("}}", '}, "base": {"epochs": 3}}'))
    with pytest.raises(ConfigError, match=r"\['base'\] appear twice"):
        load_sweep(path)


# ---------------------------------------------------------------------------- the library
def _dense_output(layer, x):
    return x @ layer.to_dense().T + layer.bias


def test_connections_edited_behind_the_version_counter_are_seen():
    import torch

    from synapses import SETLayer

    layer = SETLayer(20, 10, epsilon=2, generator=torch.Generator().manual_seed(0), compute="sparse")
    x = torch.randn(3, 20)
    layer(x)  # builds the cached index
    free = next(
        i
        for i in range(20)
        if not bool(((layer.connections[:, 0] == i) & (layer.connections[:, 1] == layer.connections[0, 1])).any())
    )
    layer.connections.data[0, 0] = free  # .data bypasses the version counter
    torch.testing.assert_close(layer(x), _dense_output(layer, x))


def test_gradient_regrowth_pairs_each_input_with_its_own_gradient():
    import torch

    from synapses import Gradient, SETLayer

    def trained(extra_forward: bool):
        layer = SETLayer(30, 20, epsilon=3, regrowth=Gradient(), generator=torch.Generator().manual_seed(1))
        a, b = (
            torch.randn(8, 30, generator=torch.Generator().manual_seed(2)),
            torch.randn(8, 30, generator=torch.Generator().manual_seed(3)),
        )
        layer(a).square().sum().backward()
        if extra_forward:
            layer(b)  # a training forward whose backward never comes (e.g. a logged loss)
        layer.evolve_connections()
        return layer.connections

    assert torch.equal(trained(False), trained(True))


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (
            lambda: __import__("synapses").SETLayer(784, 10, input_grid=(-28, -28)),
            "input_grid must be \\(height, width\\), two positive integers",
        ),
        (lambda: __import__("synapses").SETLayer(784, 10, input_grid=(28, 28.0)), "two positive integers"),
    ],
)
def test_bad_layer_arguments_are_refused(build, problem):
    with pytest.raises(ValueError, match=problem):
        build()


def test_misused_inputs_and_devices_get_one_line_that_names_the_fix():
    import torch

    from synapses import SETLayer

    layer = SETLayer(20, 10, epsilon=2)
    with pytest.raises(
        TypeError, match=r"input is torch.float16 but the layer's weight is torch.float32; convert one of them"
    ):
        layer(torch.randn(2, 20).half())
    with pytest.raises(TypeError, match=r"input is torch.int64 but the layer's weight is torch.float32"):
        layer(torch.ones(2, 20, dtype=torch.int64))
    with pytest.raises(TypeError, match="cannot be compiled by torch.jit.script"):
        torch.jit.script(layer)
    with pytest.raises(RuntimeError, match="on the meta device and holds no connections"):
        layer.to("meta")(torch.randn(2, 20, device="meta"))


@pytest.mark.parametrize("compute", ["sparse", "dense", "auto"])
def test_cpu_bfloat16_autocast_computes_in_the_layers_dtype(compute):
    import torch

    from synapses import SETLayer

    layer = SETLayer(20, 10, epsilon=2, compute=compute, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x.bfloat16())
    torch.testing.assert_close(y, _dense_output(layer, x.bfloat16().float()))


def test_moved_weights_lose_their_old_gradient():
    import torch

    from synapses import SETLayer

    layer = SETLayer(20, 10, epsilon=2)
    layer(torch.randn(4, 20)).sum().backward()
    assert bool((layer.weight.grad != 0).any())
    moved = layer.evolve_connections()
    assert bool((layer.weight.grad[moved] == 0).all())


def test_evolution_schedule_arguments_and_state_are_checked():
    import numpy as np
    import torch

    import synapses

    model = synapses.sparsify(
        torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 5)), epsilon=2
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert synapses.Evolution(model, optimizer, every=np.int64(5)).every == 5
    for total in (0, -3):
        with pytest.raises(ValueError, match="total_steps must be a positive whole number of steps"):
            synapses.Evolution(model, optimizer, every=5, total_steps=total)
    evolution = synapses.Evolution(model, optimizer, every=5)
    for state, problem in [
        ({"steps": 3}, "expects \\{'steps', 'evolutions'\\}"),
        ({"steps": -1, "evolutions": 0}, "steps must be a non-negative"),
        ({"steps": 4, "evolutions": 2}, "2 evolutions cannot have happened in 4 steps"),
    ]:
        with pytest.raises(ValueError, match=problem):
            evolution.load_state_dict(state)
    evolution.load_state_dict({"steps": 10, "evolutions": 2})
    assert evolution.state_dict() == {"steps": 10, "evolutions": 2}


# ---------------------------------------------------------------------------- the engine
@pytest.fixture
def partial_run(finished_run, tmp_path):
    """A run stopped after its first epoch (checkpoint, plain metrics.csv)."""
    config, _, small = finished_run
    path = run_experiment(config, tmp_path / "results", data=small, progress=False, stop_after=1)
    return config, RunDir(path), small


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda text: text[:-7], "its last line is cut short"),
        (lambda text: text.replace("\n1,", "\n1,garbage,", 1), "row 1"),
        (lambda text: "garbage\n", "header 'garbage'"),
        (lambda text: text.splitlines(True)[0], "results hold 0 epochs of metrics, 1 of topology, the checkpoint 1"),
    ],
    ids=["cut-mid-line", "garbage-value", "garbage-header", "rows-missing"],
)
def test_a_partial_run_with_damaged_metrics_is_refused_naming_the_file(partial_run, damage, problem):
    config, folder, small = partial_run
    metrics = folder.path / "metrics.csv"
    metrics.write_text(damage(metrics.read_text()))
    with pytest.raises(DamagedFileError, match=problem):  # one line from the command, never a traceback
        run_experiment(config, folder.path.parent, data=small, progress=False)


def test_resuming_under_another_environment_is_said_and_recorded(partial_run):
    config, folder, small = partial_run
    recorded = json.loads(folder.environment_file.read_text())
    folder.environment_file.write_text(json.dumps({**recorded, "torch": "1.0.0"}))
    with pytest.warns(UserWarning, match="resumes after epoch 1 under another environment \\(torch: 1.0.0 -> "):
        run_experiment(config, folder.path.parent, data=small, progress=False)
    environment = json.loads(folder.environment_file.read_text())
    assert environment["torch"] == "1.0.0" and environment["resumed"][0]["after_epoch"] == 1
    assert environment["resumed"][0]["torch"] == recorded["torch"]


def test_a_diverged_run_stops_with_a_status_and_is_never_done(tmp_path, finished_run, capsys):
    from synapses_study.training.engine import DivergedError

    _, _, small = finished_run
    config = ExperimentConfig(epochs=3, lr=1e12)
    with pytest.raises(DivergedError, match="diverged at epoch 1: the training loss is nan"):
        run_experiment(config, tmp_path, data=small, progress=False)
    folder = RunDir.of(config, tmp_path)
    assert folder.state(config) == "diverged" and not folder.is_finished(config)
    with pytest.raises(DivergedError, match="diverged at epoch 1"):  # not retried in silence
        run_experiment(config, tmp_path, data=small, progress=False)
    sweep = tmp_path / "s.yaml"
    sweep.write_text("base: {epochs: 3, lr: 1.0e+12}\n")
    assert sweep_main([str(sweep), "--dry-run", "--results-dir", str(tmp_path)]) == 0
    assert "diverged" in capsys.readouterr().out


def test_a_source_run_of_another_shape_is_refused_before_a_folder_is_made(tmp_path, finished_run):
    _, _, small = finished_run
    source = run_experiment(ExperimentConfig(epochs=1, hidden=(64, 32)), tmp_path, data=small, progress=False)
    for config in (
        ExperimentConfig(epochs=1, init_from=source.name),
        ExperimentConfig(epochs=1, evolution="off", topology_from=source.name),
    ):
        with pytest.raises(
            ConfigError,
            match="is a SparseNet with hidden \\[64, 32\\] .*; this run needs SparseNet with hidden \\[512, 128\\]",
        ):
            run_experiment(config, tmp_path, data=small, progress=False)
        assert not (tmp_path / config.run_id()).exists()


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (
            dict(init_from="../elsewhere/run"),
            "init_from must be a run id \\(a folder name in the results directory, no path\\)",
        ),
        (dict(evolution="off", topology_from="/abs/run"), "topology_from must be a run id"),
        (dict(train_size=100_000), "train_size must be in 1..60000"),
        (dict(test_size=20_000), "test_size must be in 1..10000"),
    ],
)
def test_config_values_that_were_silently_bent_are_refused(fields, problem):
    with pytest.raises(ConfigError, match=problem):
        ExperimentConfig(**fields)


def test_the_run_command_refuses_a_training_set_larger_than_mnist_in_one_line(tmp_path, capsys):
    from synapses_study.training import run as cli

    with pytest.raises(SystemExit) as info:
        cli.main(["--epochs", "1", "--train-size", "100000", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "train_size must be in 1..60000" in err


def test_a_full_cache_disk_is_not_reported_as_a_damaged_mnist(tmp_path, monkeypatch):
    from synapses_study.setup import data

    real_open = open

    def full_disk_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if "w" in mode and str(path).endswith(".partial"):

            def write(_):
                raise OSError(errno.ENOSPC, "No space left on device")

            handle.write = write
        return handle

    monkeypatch.setattr("builtins.open", full_disk_open)
    with pytest.raises(data.MNISTFileError, match="no space left on the device of the MNIST cache"):
        data.prepare_raw_files(data.default_source(), tmp_path / "cache")


def test_a_missing_compiler_is_named_not_a_ninja_failure(monkeypatch):
    from synapses import native

    monkeypatch.setenv("CXX", "no-such-compiler-here")
    monkeypatch.delenv("SYNAPSES_NO_NATIVE", raising=False)
    module, error = native._build()
    assert module is None and "no C++ compiler ('no-such-compiler-here' is not on PATH): install one" in error


def test_the_kernel_build_is_keyed_by_torch_and_the_source(monkeypatch):
    from synapses import native

    tag = native.build_tag()
    monkeypatch.setattr(native.torch, "__version__", "0.0.0")
    assert native.build_tag() != tag


def test_a_seed_out_of_range_fails_the_first_cell():
    from synapses_study.setup.params import check_parameters, seed_value

    check_parameters(seed=(2**32 - 1, seed_value))
    with pytest.raises(ValueError, match="seed"):
        check_parameters(seed=(2**32, seed_value))


def test_the_study_finds_its_checkout_from_the_working_directory_never_from_the_package(tmp_path):
    """A non-editable install puts the package in a virtual environment: the study's
    folders come from $SYNAPSES_ROOT or the working directory (walking up to the checkout),
    and outside any checkout a missing MNIST says how to point at one."""
    import subprocess
    import sys

    probe = "from synapses_study.setup.paths import RESULTS, MNIST_DIR; print(RESULTS); print(MNIST_DIR)"

    def where(cwd: Path, **env: str) -> list[str]:
        environ = {k: v for k, v in __import__("os").environ.items() if k != "SYNAPSES_ROOT"} | env
        return subprocess.run(
            [sys.executable, "-c", probe], cwd=cwd, env=environ, capture_output=True, text=True, check=True
        ).stdout.split()

    root = Path(__file__).parents[1]
    assert where(root / "notebooks") == [str(root / "results"), str(root / "data" / "mnist")]
    assert where(tmp_path) == [str(tmp_path.resolve() / "results"), str(tmp_path.resolve() / "data" / "mnist")]
    assert where(tmp_path, SYNAPSES_ROOT=str(root)) == [str(root / "results"), str(root / "data" / "mnist")]
    missing = subprocess.run(
        [sys.executable, "-c", "from synapses_study.setup.data import load_mnist; load_mnist()"],
        cwd=tmp_path,
        env={k: v for k, v in __import__("os").environ.items() if k not in ("SYNAPSES_ROOT", "SYNAPSES_MNIST_DIR")},
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and "set SYNAPSES_ROOT or SYNAPSES_MNIST_DIR" in missing.stderr


# ---------------------------------------------------------------------------- round three
COMMITTED = Path(__file__).parents[1] / "results"


def _copy_committed(run_id: str, results: Path) -> RunDir:
    """A copy of a committed run folder (never the committed one: tests damage it)."""
    shutil.copytree(COMMITTED / run_id, results / run_id)
    return RunDir(results / run_id)


class TestTheWriteUpReadsOnlyVerifiedRunsOfItsSweepFiles:
    """Every reader of the write-up's runs verifies them; a damaged run is named, never
    dropped; a trial run in results/ never changes a number."""

    NOISE_S0 = "sparsenet_e400_wd0_scaled_noise0.1_rec_s0_3d849772"
    NOISE_S1 = "sparsenet_e400_wd0_scaled_noise0.1_rec_s1_84f47b98"

    def test_a_run_with_another_runs_valid_topology_is_named_not_pending(self, tmp_path):
        from synapses_study.mechanism.account import finished_runs

        first, second = (_copy_committed(r, tmp_path) for r in (self.NOISE_S0, self.NOISE_S1))
        assert set(finished_runs(tmp_path, "why_it_inverts", "e5_blank_noise")) == {0, 1}
        shutil.copyfile(second.topology_file, first.topology_file)  # a valid file, of another run
        with pytest.raises(DamagedFileError, match=f"{self.NOISE_S0}: topology.npz does not match manifest.json"):
            finished_runs(tmp_path, "why_it_inverts", "e5_blank_noise")

    def test_the_survivor_table_names_a_damaged_run(self, tmp_path):
        from synapses_study.mechanism.account import FINAL_CONFIGURATIONS, final_survivor_table
        from synapses_study.reading.results import select_runs

        _, sweep, entry, fields = FINAL_CONFIGURATIONS[0]
        folder = _copy_committed(select_runs(sweep, entry, None, **fields)[0].run_id(), tmp_path)
        (folder.path / "metrics.csv.xz").write_bytes(b"")
        with pytest.raises(DamagedFileError, match="metrics.csv.xz does not match manifest.json"):
            final_survivor_table(tmp_path)

    def test_a_trial_run_never_changes_a_fact_and_a_damaged_one_is_named(self, tmp_path, run_copy):
        from synapses_study.writeup.facts import empty_pixels

        hit = "sparsenet_e155_wd0_l1-1e-05_s1_bb182bc2"
        _copy_committed(hit, tmp_path)
        _copy_committed("sparsenet_e10_wd0_s0_3d8c15a1", tmp_path)  # committed, but no sweep file names it
        expected = f"1 of 1 runs ({hit}: pixel 90 after epoch 16, 1 pixel-epoch(s) in all)"
        assert empty_pixels(tmp_path) == expected
        _, trial, _ = run_copy
        shutil.copytree(trial.path, tmp_path / trial.path.name)  # a finished trial run beside them
        assert empty_pixels(tmp_path) == expected
        shutil.copyfile(trial.topology_file, tmp_path / hit / "topology.npz")
        with pytest.raises(DamagedFileError, match=f"{hit}: topology.npz does not match"):
            empty_pixels(tmp_path)

    def test_a_fact_reading_a_run_verifies_it_first(self, tmp_path):
        from synapses_study.reading.results import select_runs
        from synapses_study.writeup.facts import experiment_1_window

        configs = select_runs("sweep155", weight_decay=1e-3)
        for config in configs:
            _copy_committed(config.run_id(), tmp_path)
        experiment_1_window(tmp_path)
        (tmp_path / configs[0].run_id() / "environment.json").write_text("{}\n")
        with pytest.raises(DamagedFileError, match="environment.json does not match manifest.json"):
            experiment_1_window(tmp_path)


class TestMarkersCannotHide:
    """A write-up's markers are all found, or the file is refused."""

    def test_an_unmatched_backtick_never_hides_a_table_in_another_paragraph(self):
        text = "A stray ` here.\n\n<!-- table: sweep155 -->\n| made up |\n<!-- /table -->\n\nand `code` there.\n"
        assert [(m.kind, m.name) for m in parse_markers(text)] == [("table", "sweep155")]

    def test_an_unmatched_backtick_before_a_marker_in_one_paragraph_is_refused(self):
        text = "A stray ` and <!--v fact:empty_pixels -->1 of 2<!--/v--> then `code`.\n"
        with pytest.raises(MarkerError, match="line 1: inline code holds the marker .* pair or escape that backtick"):
            parse_markers(text)

    def test_quoted_markers_are_text(self):
        text = (
            "Between `<!-- table: … -->` and `<!--v … -->` markers.\n\n```\n<!--v fact:x -->1<!--/v-->\n```\n\n"
            "Para.\n\n    <!--v fact:y -->2<!--/v-->\n\n- item\n\n    <!--v fact:z -->3<!--/v-->\n"
        )
        assert [m.name for m in parse_markers(text)] == ["fact:z"]  # in a list item it is no code block

    def test_a_small_file_with_a_hidden_marker_fails_check(self, tmp_path, capsys):
        path = tmp_path / "w.md"
        path.write_text("Say ` then <!--v fact:empty_pixels -->made up<!--/v--> and `x`.\n")
        with pytest.raises(SystemExit) as exit_info:
            report.main([str(path), "--check"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error: ") and "inline code holds the marker" in err

    def test_regenerating_a_crlf_write_up_keeps_its_line_endings(self, tmp_path, monkeypatch):
        monkeypatch.setattr(report, "fact", lambda name, root: "42")
        path = tmp_path / "w.md"
        path.write_bytes(b"Title\r\n\r\nIt is <!--v fact:empty_pixels -->41<!--/v-->.\r\nEnd\r\n")
        assert report.main([str(path), "--results-dir", str(tmp_path)]) == 0
        assert path.read_bytes() == b"Title\r\n\r\nIt is <!--v fact:empty_pixels -->42<!--/v-->.\r\nEnd\r\n"
        path.write_bytes(b"a\r\nb\n")
        with pytest.raises(SystemExit):
            report.main([str(path), "--check"])


class TestRunStateIsNeverLost:
    """A run folder that lost a file, a manifest or a row is refused by name, never
    finished with a hole nor trained over; a finished run is read without writing."""

    @pytest.mark.parametrize("lost", ["pruning.npz", "config.json", "environment.json"])
    def test_a_partial_run_that_lost_a_file_is_refused_before_training(self, partial_run, lost):
        config, folder, small = partial_run
        (folder.path / lost).unlink()
        before = folder.checkpoint_file.read_bytes()
        with pytest.raises(DamagedFileError, match=f"{lost} missing beside the checkpoint of epoch 1; delete"):
            run_experiment(config, folder.path.parent, data=small, progress=False)
        assert folder.checkpoint_file.read_bytes() == before and not folder.manifest_file.exists()

    def test_a_partial_run_whose_pruning_lost_an_epoch_is_refused(self, partial_run):
        from synapses_study.runs.run_files import read_pruning, write_pruning

        config, folder, small = partial_run
        pruned, mass = read_pruning(folder.pruning_file)
        write_pruning(folder.pruning_file, pruned[:0], None)
        with pytest.raises(DamagedFileError, match="pruning.npz holds 0 epochs, the checkpoint 1"):
            run_experiment(config, folder.path.parent, data=small, progress=False)

    def test_a_finished_run_that_lost_its_manifest_is_damaged_not_retrained(self, run_copy):
        config, folder, small = run_copy
        folder.manifest_file.unlink()
        before = {p.name: p.read_bytes() for p in folder.path.iterdir()}
        assert folder.state(config) == "damaged"
        with pytest.raises(DamagedFileError, match="manifest.json is missing but the finished run's metrics.csv.xz"):
            run_experiment(config, folder.path.parent, data=small, progress=False)
        assert {p.name: p.read_bytes() for p in folder.path.iterdir()} == before

    def test_a_finished_run_on_a_read_only_folder_writes_nothing(self, run_copy, monkeypatch):
        import os

        config, folder, small = run_copy

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", str(args[0]))

        for name in ("unlink", "open", "replace", "rename", "mkdir"):
            monkeypatch.setattr(os, name, read_only)
        assert run_experiment(config, folder.path.parent, data=small, progress=False) == folder.path

    def test_a_stray_model_in_a_run_that_kept_none_is_never_a_source(self, tmp_path, run_copy):
        config, folder, small = run_copy
        source = run_experiment(
            ExperimentConfig(epochs=1, keep_network=False, train_size=1000, test_size=200),
            tmp_path,
            data=small,
            progress=False,
        )
        shutil.copyfile(folder.model_file, source / "model.pt")  # a valid model.pt, of another run
        with pytest.raises(FileNotFoundError, match="kept no final network"):
            RunDir(source).model_state()
        follower = ExperimentConfig(epochs=1, init_from=source.name)
        with pytest.raises(ConfigError, match=f"init_from='{source.name}' kept no final network"):
            run_experiment(follower, tmp_path, data=small, progress=False)
        assert not (tmp_path / follower.run_id()).exists()

    def test_a_model_sealed_for_another_run_is_refused(self, tmp_path, run_copy):
        config, folder, _ = run_copy
        run_files.save_model(folder.model_file, {}, "another_run")
        with pytest.raises(DamagedFileError, match="belongs to run 'another_run'"):
            folder.model_state()


class TestLinksAreNeverFollowed:
    """A lock or temporary file planted as a symbolic link never gets its target written."""

    @pytest.mark.parametrize("name", ["checkpoint.pt.tmp", "metrics.csv.tmp", "topology.npz.tmp"])
    def test_a_planted_temporary_link_in_a_partial_run(self, partial_run, tmp_path, name):
        config, folder, small = partial_run
        victim = tmp_path / "victim.txt"
        victim.write_text("keep me")
        (folder.path / name).symlink_to(victim)
        run_experiment(config, folder.path.parent, data=small, progress=False)
        assert victim.read_text() == "keep me" and folder.is_finished(config)

    def test_a_planted_lock_link_is_refused(self, partial_run, tmp_path):
        config, folder, small = partial_run
        victim = tmp_path / "victim.txt"
        victim.write_text("keep me")
        (folder.path / ".lock").unlink(missing_ok=True)
        (folder.path / ".lock").symlink_to(victim)
        with pytest.raises(OSError, match=r"\.lock is a symbolic link, not a lock file; delete it"):
            run_experiment(config, folder.path.parent, data=small, progress=False)
        assert victim.read_text() == "keep me"

    def test_a_planted_link_beside_the_write_up(self, tmp_path, monkeypatch):
        monkeypatch.setattr(report, "fact", lambda name, root: "42")
        victim = tmp_path / "victim.txt"
        victim.write_text("keep me")
        path = tmp_path / "w.md"
        path.write_text("<!--v fact:empty_pixels -->1<!--/v-->\n")
        (tmp_path / "w.md.tmp").symlink_to(victim)
        assert report.main([str(path), "--results-dir", str(tmp_path)]) == 0
        assert victim.read_text() == "keep me" and path.read_text() == "<!--v fact:empty_pixels -->42<!--/v-->\n"


class TestConfigValuesMeanWhatTheySay:
    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("base: {epochs: 1:30}\n", "'1:30' is a base-60 number to YAML \\(it reads 1:30 as 90\\)"),
            ("base: {lr: 1:30.5}\n", "'1:30.5' is a base-60 number to YAML \\(it reads 1:30.5 as 90.5\\)"),
            ("base: {1: 2}\n", "key '1' is not a field name"),
            ("base: {null: 2}\n", "key 'null' is not a field name"),
        ],
        ids=["sexagesimal-int", "sexagesimal-float", "key-1", "key-null"],
    )
    def test_yaml_that_would_be_misread_is_refused(self, tmp_path, text, problem):
        path = tmp_path / "s.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=problem):
            load_sweep(path)

    def test_a_config_json_with_a_key_twice_is_one_line(self, tmp_path, capsys):
        from synapses_study.training.run import main as run_main

        path = tmp_path / "c.json"
        path.write_text('{"epochs": 2, "epochs": 3}')
        with pytest.raises(SystemExit) as exit_info:
            run_main(["--config", str(path), "--results-dir", str(tmp_path / "r")])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1
        assert "['epochs'] appear twice in one object; keep one" in err and not (tmp_path / "r").exists()

    def test_a_run_folder_config_that_is_cut_short_is_named(self, run_copy):
        config, folder, _ = run_copy
        folder.config_file.write_text(folder.config_file.read_text()[:20])
        with pytest.raises(ConfigError, match="config.json: not a readable JSON config file"):
            load_runs(None, folder.path.parent)

    def test_a_device_with_a_non_ascii_digit_is_refused(self):
        with pytest.raises(ConfigError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
            ExperimentConfig(device="cuda:\u0661")

    @pytest.mark.parametrize(
        ("fields", "problem"),
        [
            (dict(lr=1e308), "lr must be at most 3.403e\\+38 \\(float32.s largest number\\)"),
            (dict(input_lr_factor=1e300), "lr \\* input_lr_factor must be at most 3.403e\\+38"),
            (dict(hidden=(10**9, 10)), "layer 0 \\(784 x 1000000000\\) would hold more than 2147483647 connections"),
            (dict(model="Dense", evolution="off", hidden=(10**7, 10)), "layer 0 \\(784 x 10000000\\) is too large"),
        ],
        ids=["lr", "input-lr-factor", "hidden-sparse", "hidden-dense"],
    )
    def test_huge_values_are_one_line_before_a_folder_is_made(self, tmp_path, capsys, fields, problem):
        from synapses_study.training.run import main as run_main

        with pytest.raises(ConfigError, match=problem):
            ExperimentConfig(**fields)
        flags = [
            part
            for k, v in fields.items()
            for part in (f"--{k.replace('_', '-')}", str(v).strip("()").replace(", ", ","))
        ]
        with pytest.raises(SystemExit) as info:
            run_main([*flags, "--results-dir", str(tmp_path / "r")])
        assert info.value.code == 2 and capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "r").exists()


class TestRegrowthRulesAreChecked:
    """Every rule's keys are checked unless the rule is a built-in one, and its arguments
    are refused where a layer would refuse them."""

    @staticmethod
    def _model():
        import torch

        import synapses

        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.ReLU(), torch.nn.Linear(100, 50))
        model = synapses.sparsify(net, epsilon=5, keep_output_dense=False)
        return model, torch.optim.SGD(model.parameters(), lr=0.1)

    def test_a_grid_that_fits_only_the_first_layer_is_refused(self):
        import synapses

        model, optimizer = self._model()
        with pytest.raises(ValueError, match="has 784 pixels but a SETLayer has in_features=100; give this rule"):
            synapses.Evolution(model, optimizer, every=1, regrowth=synapses.NearParents(0.9, input_grid=(28, 28)))

    @pytest.mark.parametrize("grid", [(-28, -28), (0, 0), (28.0, 28.0), "28x28", (28,)])
    def test_bad_grids_are_refused_as_the_layer_refuses_them(self, grid):
        import synapses

        with pytest.raises(ValueError, match="input_grid must be \\(height, width\\), two positive integers"):
            synapses.NearParents(1.0, input_grid=grid)

    @pytest.mark.parametrize("base", ["Uniform", "NearParents", "Gradient"])
    @pytest.mark.parametrize(
        ("placed", "problem"),
        [
            (lambda kept, n: kept.new_tensor([0, 0]), "returned a key twice"),
            (lambda kept, n: kept.new_tensor([10**9]), "returned a key outside"),
            (lambda kept, n: [0], "must return a 1-d int64 tensor of keys, got list"),
            (lambda kept, n: None, "must return a 1-d int64 tensor of keys, got NoneType"),
        ],
        ids=["twice", "outside", "list", "none"],
    )
    def test_a_subclass_that_overrides_place_is_checked(self, base, placed, problem):
        import torch

        import synapses

        class Mine(getattr(synapses, base)):
            def place(self, layer, kept_keys, kept_weights, n):
                return placed(kept_keys, n)

        layer = synapses.SETLayer(20, 10, epsilon=2, generator=torch.Generator().manual_seed(0))
        layer.zero_connections(0.3)
        with pytest.raises(ValueError, match=f"Mine.place {problem}" if "tensor" not in problem else problem):
            layer.evolve_connections(regrowth=Mine())

    def test_per_pass_stops_at_total_steps_and_is_a_number(self):
        import torch

        import synapses

        model, optimizer = self._model()
        evolution = synapses.Evolution(model, optimizer, per_pass=1.0, total_steps=5)
        for _ in range(20):
            optimizer.zero_grad()
            model(torch.randn(2, 784)).sum().backward()
            optimizer.step()
            evolution.step()
        assert evolution.evolutions == 5 * len(evolution.layers)
        for bad in ("0.5", True):
            with pytest.raises(ValueError, match="per_pass must be a probability, a number in \\[0, 1\\]"):
                synapses.Evolution(model, optimizer, per_pass=bad)

    def test_a_second_per_pass_evolution_on_one_model_is_refused_until_the_first_closes(self):
        import synapses

        model, optimizer = self._model()
        first = synapses.Evolution(model, optimizer, per_pass=0.5)
        with pytest.raises(ValueError, match="already evolves per pass under another Evolution; call that one's close"):
            synapses.Evolution(model, optimizer, per_pass=0.5)
        first.close()
        synapses.Evolution(model, optimizer, per_pass=0.5)


class TestSweepsAtScaleAndSideBySide:
    def test_a_dry_run_computes_each_run_id_a_bounded_number_of_times(self, tmp_path, monkeypatch):
        from synapses_study.training.sweep import format_dry_run

        path = tmp_path / "s.yaml"
        path.write_text("base: {epochs: 2}\ngrid: {seed: [" + ", ".join(map(str, range(300))) + "]}\n")
        sweep = load_sweep(path)
        calls = []
        original = ExperimentConfig.run_id
        monkeypatch.setattr(ExperimentConfig, "run_id", lambda self: calls.append(1) or original(self))
        assert "300 new" in format_dry_run(sweep, tmp_path / "results")
        assert len(calls) <= 6 * 300  # was 300 per run: every run rebuilt the sweep's ids

    @pytest.mark.parametrize(
        "code, words", [(errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system")], ids=str
    )
    def test_a_sweep_on_an_unwritable_results_folder_is_one_line(self, tmp_path, capsys, monkeypatch, code, words):
        # As root (CI) a chmod'ed folder stays writable, so the refusal is simulated where it happens.
        def refuse(self, *args, **kwargs):
            raise OSError(code, words, str(self))

        sweep = tmp_path / "s.yaml"
        sweep.write_text("base: {epochs: 1}\n")
        monkeypatch.setattr(Path, "mkdir", refuse)
        with pytest.raises(SystemExit) as info:
            sweep_main([str(sweep), "--results-dir", str(tmp_path / "results")])
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count("\n") == 1
        assert err.startswith("error: cannot write in ") and f"({words}); choose a writable --results-dir" in err

    def test_a_run_another_sweep_is_training_is_waited_for_not_failed(self, tmp_path):
        import threading

        from synapses_study.runs.run_files import hold_lock
        from synapses_study.training.sweep import run_job

        config = ExperimentConfig(epochs=1, train_size=500, test_size=100)
        folder = RunDir.of(config, tmp_path)
        folder.path.mkdir(parents=True)
        held, release = threading.Event(), threading.Event()

        def other_sweep() -> None:
            with hold_lock(folder.path):
                held.set()
                release.wait(10)

        thread = threading.Thread(target=other_sweep)
        thread.start()
        held.wait(10)
        threading.Timer(0.5, release.set).start()
        assert run_job(config.to_dict(), str(tmp_path)) == str(folder.path)
        thread.join()
        assert folder.is_finished(config)


class TestClearWords:
    """Where a user waited in silence or read a misleading message (issue 39 §3)."""

    def test_no_checkout_found_says_how_to_point_at_one(self, tmp_path):
        from synapses_study.setup.sweep_file import sweep_names

        with pytest.raises(ConfigError, match="no configs/ \\(nor results/\\) found: .* set SYNAPSES_ROOT to it"):
            sweep_names(tmp_path / "configs")

    def test_the_run_command_says_where_it_trains_before_training(self, tmp_path, capsys, monkeypatch):
        import synapses_study.training.engine
        from synapses_study.training.run import main as run_main

        def refuse(*args, **kwargs):
            raise ConfigError("stopped before training")

        monkeypatch.setattr(synapses_study.training.engine, "run_experiment", refuse)
        with pytest.raises(SystemExit):
            run_main(["--epochs", "1", "--results-dir", str(tmp_path)])
        out = capsys.readouterr().out
        assert out.startswith("run sparsenet_e1_wd0_s0_") and f"in {tmp_path}/sparsenet_e1" in out

    def test_the_report_says_what_it_computes_during_a_long_stretch(self, capsys):
        import time

        with report.Heartbeat("w.md: computing", 3, every=0.05) as progress:
            progress("table sweep155")
            time.sleep(0.3)
        err = capsys.readouterr().err
        assert "w.md: computing table sweep155 (1 of at most 3; 0 s so far)" in err
        with report.Heartbeat("w.md: computing", 3) as progress:  # done within 5 s: silent
            progress("fact:x")
        assert capsys.readouterr().err == ""

    def test_the_example_prints_each_epoch_and_within_a_long_one(self, mnist, capsys):
        import importlib.util

        import torch

        import synapses

        spec = importlib.util.spec_from_file_location(
            "your_model", Path(__file__).parents[1] / "examples" / "your_model.py"
        )
        example = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(example)
        data = example.MNIST(
            mnist.train_x[:300].flatten(1), mnist.train_y[:300], mnist.test_x[:50].flatten(1), mnist.test_y[:50]
        )
        model = synapses.sparsify(
            torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)), epsilon=5
        )
        example.train(model, data, epochs=2, report_every=0.0)
        out = capsys.readouterr().out
        assert "epoch 1 of 2: 100 of 300 training images" in out and "epoch 2 of 2: test accuracy " in out


class TestReadingEveryRun:
    """``load_runs`` over a whole results folder reads every run folder or names the one it cannot."""

    def test_a_folder_without_config_is_named_not_skipped(self, run_copy):
        config, folder, _ = run_copy
        (folder.path.parent / "stray").mkdir()
        with pytest.raises(DamagedFileError, match="stray has no config.json: not a run folder; move it out"):
            load_runs(None, folder.path.parent)

    def test_two_folders_swapped_by_name_are_named(self, run_copy, tmp_path):
        config, folder, small = run_copy
        other = run_experiment(
            ExperimentConfig(epochs=1, train_size=300, test_size=100), folder.path.parent, data=small, progress=False
        )
        assert set(load_runs(None, folder.path.parent)["run_id"]) == {folder.path.name, other.name}
        folder.path.rename(tmp_path / "swap")
        other.rename(folder.path)
        (tmp_path / "swap").rename(other)
        with pytest.raises(DamagedFileError, match="holds the config of run .*: the folder was renamed or swapped"):
            load_runs(None, folder.path.parent)


class TestEveryOptimizerIsReset:
    def test_a_second_optimizer_over_an_evolving_layer_is_refused_at_its_first_step(self):
        import torch

        import synapses

        model = synapses.sparsify(torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.Linear(30, 5)), epsilon=2)
        first = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        second = torch.optim.SGD(model[0].parameters(), lr=0.1, momentum=0.9)
        unrelated = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
        evolution = synapses.Evolution(model, first, every=1)
        model(torch.randn(4, 20)).sum().backward()
        first.step()
        unrelated.step()
        with pytest.raises(
            ValueError, match="a second SGD updates the weight of SETLayer '0'.*the optimizer given to Evolution"
        ):
            second.step()
        model[0].optimizer = second  # reset with the layer's own optimizer: accepted
        second.step()
        evolution.step()
        moved = evolution.evolve()[0]
        assert moved.numel() and bool((second.state[model[0].weight]["momentum_buffer"][moved] == 0).all())


class TestNotebookParameters:
    def test_a_misspelt_papermill_parameter_is_refused(self):
        from synapses_study.figures.notebook import check_known_parameters
        from synapses_study.setup.params import ParameterError

        defaults = '# Parameters (papermill: -p NAME VALUE)\nprofile: str = "default"\nprefix = ""\n'
        check_known_parameters(["import x", defaults, '# Parameters\nprofile = "smoke"\n'])
        with pytest.raises(
            ParameterError,
            match="unknown notebook parameter\\(s\\) profil; this notebook's parameters: prefix, profile",
        ):
            check_known_parameters(["import x", defaults, '# Parameters\nprofil = "smoke"\n'])

    @pytest.mark.end_to_end  # a kernel starts: several seconds
    def test_the_explore_notebook_refuses_one_under_papermill(self, tmp_path):
        import os
        import subprocess
        import sys

        root = Path(__file__).parents[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "papermill",
                str(root / "notebooks" / "explore.ipynb"),
                str(tmp_path / "o.ipynb"),
                "-p",
                "sweeep",
                "sweep155",
                "--cwd",
                str(root),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "SYNAPSES_ROOT": str(root)},
            timeout=300,
        )
        assert done.returncode != 0 and "unknown notebook parameter(s) sweeep" in done.stderr


class TestSparsify:
    """sparsify neither changes what it only reads nor ignores what it is told (issue 39).
    torch is imported here, not in the header the other classes share."""

    def test_an_example_input_leaves_the_model_as_it_was(self):
        import torch
        from torch import nn

        import synapses

        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3)).train()
        model[2].eval()  # a mode set per module is kept too
        before = {name: buffer.clone() for name, buffer in model.named_buffers()}
        synapses.sparsify(model, epsilon=2, example_input=torch.randn(5, 6) * 10 + 3, verbose=False)
        for name, buffer in model.named_buffers():
            if name in before:  # BatchNorm's running mean and variance and its batch count
                assert torch.equal(buffer, before[name]), name
        assert [m.training for m in model.modules()] == [True, True, True, False, True]
        assert isinstance(model[0], synapses.SETLayer) and isinstance(model[3], nn.Linear)

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            (
                dict(output_layer="2"),
                r"output_layer='2' names the layer that keep_output_dense=True keeps dense, but keep_output_dense is "
                r"False; drop output_layer=, or keep it dense with exclude=\['2'\]",
            ),
            (dict(example_input="x"), "example_input= only finds the output layer .* drop example_input="),
        ],
        ids=["output_layer", "example_input"],
    )
    def test_an_argument_keep_output_dense_false_would_ignore_is_refused(self, kwargs, match):
        import torch
        from torch import nn

        import synapses

        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        if kwargs.get("example_input") == "x":
            kwargs["example_input"] = torch.randn(2, 6)
        with pytest.raises(ValueError, match=match) as error:
            synapses.sparsify(model, epsilon=2, keep_output_dense=False, verbose=False, **kwargs)
        assert "\n" not in str(error.value)
        assert all(type(m) is nn.Linear for m in (model[0], model[2]))  # refused before anything changed

    def test_a_module_registered_twice_is_never_split_into_a_sparse_and_a_dense_copy(self):
        import torch
        from torch import nn

        import synapses

        class TwoPaths(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.body = nn.Linear(6, 6)
                self.mixer = nn.Linear(6, 6)
                self.out = self.mixer  # the same module under a second, later name: guessed as the output

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.out(torch.relu(self.mixer(torch.relu(self.body(x)))))

        model = TwoPaths()
        with pytest.warns(UserWarning, match=r"'mixer' kept dense: the same module as 'out', which stays dense"):
            _, report = synapses.sparsify(model, epsilon=2, verbose=False, return_report=True)
        assert model.mixer is model.out and type(model.mixer) is nn.Linear  # still one (dense) layer
        assert isinstance(model.body, synapses.SETLayer)
        kept = [entry.name for entry in report if "kept dense" in str(entry)]
        assert "mixer" in kept and "out" in kept


class TestKernelBuild:
    """The compiled kernels' build says what stopped it (issue 39)."""

    @pytest.mark.parametrize(
        "failure",
        [
            OSError(28, "No space left on device"),
            RuntimeError(
                "Error building extension 'synapses_sparse_linear_x': ld: final link failed: No space left on device"
            ),
        ],
        ids=["ENOSPC", "linker message"],
    )
    def test_a_full_disk_during_the_kernel_build_is_named(self, monkeypatch, failure):
        from torch.utils import cpp_extension

        from synapses import native

        def fail(*args, **kwargs):
            raise failure

        monkeypatch.delenv("SYNAPSES_NO_NATIVE", raising=False)
        monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/tmp/full-disk")
        monkeypatch.setattr(native, "_stamp", lambda path: None)  # as if nothing were built yet
        monkeypatch.setattr(native, "_prebuilt", lambda: None, raising=False)
        monkeypatch.setattr(cpp_extension, "load", fail)
        module, why = native._build()
        assert module is None
        assert why.startswith("no space left on the device to build the kernels in /tmp/full-disk")
        assert "TORCH_EXTENSIONS_DIR" in why and "\n" not in why
