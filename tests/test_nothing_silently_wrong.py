"""Damage and misuse that used to pass silently: each becomes a correct result or a
one-line refusal that names the value and the way out. Grouped by class: finished runs
are verified, the write-up's markers are parsed strictly, sweep files mean what they say."""
import errno
import json
import shutil

import pytest

from synapses.study import report, run_files
from synapses.study.config import ConfigError, ExperimentConfig
from synapses.study.engine import run_experiment
from synapses.study.markers import MarkerError, parse_markers
from synapses.study.results import load_runs
from synapses.study.run_dir import RunDir
from synapses.study.run_files import DamagedFileError, save_checkpoint
from synapses.study.sweep import load_sweep
from synapses.study.sweep import main as sweep_main


# ---------------------------------------------------------------------------- finished runs
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mnist):
    from synapses.study.data import MNISTTensors

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
        (lambda d: d.config_file.write_text(d.config_file.read_text().replace('"lr": 0.01', '"lr": 0.02')), "config.json does not match manifest.json"),
        (lambda d: _truncate(d.metrics_file, 0.9), "metrics.csv.xz does not match manifest.json"),
        (lambda d: d.model_file.unlink(), "model.pt is missing"),
        (lambda d: d.manifest_file.write_text("{not json"), "manifest.json is damaged"),
    ],
    ids=["truncated-topology", "truncated-pruning", "edited-config", "missing-metrics-row", "no-model", "damaged-manifest"],
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
    sweep.write_text("base: {epochs: 2, record_pruning: true, record_weight_mass: false, train_size: 1000}\ngrid: {seed: [0, 1]}\n")
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
    from synapses.study.paths import RESULTS

    folders = [p for p in RESULTS.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert folders
    for path in folders:
        folder = RunDir(path)
        assert folder.problem(folder.config()) is None, path.name


# ---------------------------------------------------------------------------- the write-up's markers
GOOD = "Intro <!--v fact:x -->1<!--/v--> and\n<!-- table: sweep155 -->\n| a |\n<!-- /table -->\nend `<!--v not a marker -->` done\n"


def test_markers_pair_up_and_code_spans_are_text():
    spans = parse_markers(GOOD)
    assert [(s.kind, s.name) for s in spans] == [("value", "fact:x"), ("table", "sweep155")]
    assert GOOD[spans[0].body_start : spans[0].body_end] == "1" and GOOD[spans[1].body_start : spans[1].body_end] == "| a |\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a <!--v fact:x -->1 and more prose\n<!--v fact:y -->2<!--/v-->", "line 2: .* opens a marker inside the value 'fact:x' opened at line 1"),
        ("<!-- table: sweep155 -->\n| a |\nprose that must survive\n", "line 1: the table 'sweep155' is never closed"),
        ("prose <!--/v--> more", "line 1: '<!--/v-->' closes a value, but nothing is open"),
        ("<!-- tabel: sweep155 -->\n| a |\n<!-- /table -->\n", "line 1: '<!-- tabel: sweep155 -->' looks like a marker"),
        ("x <!--v fact:x -->1<!--/ v-->", "looks like a marker"),
        ("<!-- table: sweep155 --> trailing\n<!-- /table -->\n", "must end its line"),
    ],
    ids=["value-unclosed", "table-unclosed", "close-without-open", "mistyped-table", "mistyped-close", "table-not-on-own-line"],
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
    free = next(i for i in range(20) if not bool(((layer.connections[:, 0] == i) & (layer.connections[:, 1] == layer.connections[0, 1])).any()))
    layer.connections.data[0, 0] = free  # .data bypasses the version counter
    torch.testing.assert_close(layer(x), _dense_output(layer, x))


def test_gradient_regrowth_pairs_each_input_with_its_own_gradient():
    import torch

    from synapses import SETLayer

    def trained(extra_forward: bool):
        layer = SETLayer(30, 20, epsilon=3, regrowth="gradient", generator=torch.Generator().manual_seed(1))
        a, b = torch.randn(8, 30, generator=torch.Generator().manual_seed(2)), torch.randn(8, 30, generator=torch.Generator().manual_seed(3))
        layer(a).square().sum().backward()
        if extra_forward:
            layer(b)  # a training forward whose backward never comes (e.g. a logged loss)
        layer.evolve_connections()
        return layer.connections

    assert torch.equal(trained(False), trained(True))


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: __import__("synapses").SETLayer(784, 10, input_grid=(-28, -28)), "input_grid must be \\(height, width\\), two positive integers"),
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
    with pytest.raises(TypeError, match=r"input is torch.float16 but the layer's weight is torch.float32; convert one of them"):
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

    model = synapses.sparsify(torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 5)), epsilon=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert synapses.Evolution(model, optimizer, every=np.int64(5)).every == 5
    for total in (0, -3):
        with pytest.raises(ValueError, match="total_steps must be a positive whole number of steps"):
            synapses.Evolution(model, optimizer, every=5, total_steps=total)
    evolution = synapses.Evolution(model, optimizer, every=5)
    for state, problem in [({"steps": 3}, "expects \\{'steps', 'evolutions'\\}"), ({"steps": -1, "evolutions": 0}, "steps must be a non-negative"),
                           ({"steps": 4, "evolutions": 2}, "2 evolutions cannot have happened in 4 steps")]:
        with pytest.raises(ValueError, match=problem):
            evolution.load_state_dict(state)
    evolution.load_state_dict({"steps": 10, "evolutions": 2})
    assert evolution.state_dict() == {"steps": 10, "evolutions": 2}
