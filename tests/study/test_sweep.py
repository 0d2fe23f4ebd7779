"""Sweep files and the submitit-based runner (local executor: real subprocesses)."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synapses_study.runs.run_files import read_text, read_topology
from synapses_study.setup.config import ConfigError
from synapses_study.setup.sweep_file import CONFIGS, load_sweep, run_labels
from synapses_study.training.sweep import main

TINY = """
description: tiny sweep for the tests
base: {epochs: 2, train_size: 1000, test_size: 200}
grid:
  weight_decay: [0.0, 1.0e-3]
  seed: [0, 1]
"""


def _write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_expansion(tmp_path):
    sweep = load_sweep(_write(tmp_path, TINY))
    configs = [r.config for r in sweep.runs]
    assert len(configs) == 4 and sweep.description == "tiny sweep for the tests"
    assert {(c.weight_decay, c.seed) for c in configs} == {(0.0, 0), (0.0, 1), (1e-3, 0), (1e-3, 1)}
    assert all(c.epochs == 2 and c.train_size == 1000 for c in configs)


def test_entries_with_their_own_grids_and_dependencies(tmp_path):
    text = """
base: {epochs: 3}
grid: {seed: [0, 1]}
runs:
  - {name: l1, grid: {l1: [1.0e-5, 1.0e-4]}}
  - {name: phase2, model: EvolNet, evolution: pass, evolution_proba: 0.25}
  - {name: phase3, after: phase2, model: EvolNet, evolution: pass, evolution_proba: 0.1}
"""
    sweep = load_sweep(_write(tmp_path, text))
    assert [r.entry for r in sweep.runs] == ["l1"] * 4 + ["phase2"] * 2 + ["phase3"] * 2
    phase2 = {r.config.seed: r.config.run_id() for r in sweep.runs if r.entry == "phase2"}
    for run in sweep.runs[6:]:
        assert run.after == phase2[run.config.seed] == run.config.init_from


def test_override_scales_a_sweep_down_and_keeps_its_chains(tmp_path):
    text = """
base: {epochs: 30, model: EvolNet, evolution: pass}
grid: {seed: [0, 1, 2], weight_decay: [0.0, 1.0e-3]}
runs:
  - {name: phase2, epochs: 48, evolution_proba: 0.25}
  - {name: phase3, after: phase2, epochs: 450, evolution_proba: 0.1}
"""
    full = load_sweep(_write(tmp_path, text))
    small = load_sweep(tmp_path / "sweep.yaml", override={"epochs": 2, "train_size": 1000, "seed": [0]})
    assert len(full.runs) == 12 and len(small.runs) == 4
    assert all(r.config.epochs == 2 and r.config.train_size == 1000 and r.config.seed == 0 for r in small.runs)
    phase2 = {r.config.weight_decay: r.config.run_id() for r in small.runs if r.entry == "phase2"}
    for run in small.runs[2:]:
        assert run.config.init_from == phase2[run.config.weight_decay]
    # a scalar replaces a grid axis of the same name
    fixed = load_sweep(tmp_path / "sweep.yaml", override={"weight_decay": 0.0})
    assert {r.config.weight_decay for r in fixed.runs} == {0.0} and len(fixed.runs) == 6


TWO_ENTRIES = """
base: {epochs: 3}
grid: {seed: [0, 1]}
runs:
  - {name: l1, grid: {l1: [1.0e-5, 1.0e-4]}}
  - {name: growing, weight_decay: 1.0e-3, weight_decay_end: 1.0e-2}
"""


def test_run_labels_name_the_entry_and_what_varies_within_it(tmp_path):
    from synapses_study.setup.sweep_file import run_labels

    one_entry = load_sweep(_write(tmp_path, TINY))
    assert sorted(set(run_labels(one_entry).values())) == ["weight_decay=0.0", "weight_decay=0.001"]
    labels = run_labels(load_sweep(_write(tmp_path, TWO_ENTRIES, "two.yaml")))
    assert sorted(set(labels.values())) == ["growing", "l1 (l1=0.0001)", "l1 (l1=1e-05)"]
    assert len(labels) == 6


def test_labelled_groups_pool_seeds_and_keep_the_whole_files_labels_for_one_entry(tmp_path):
    from synapses_study.setup.sweep_file import labelled_groups

    sweep = load_sweep(_write(tmp_path, TWO_ENTRIES, "two.yaml"))
    groups = labelled_groups(sweep)
    assert list(groups) == ["l1 (l1=1e-05)", "l1 (l1=0.0001)", "growing"]
    assert [[c.seed for c in configs] for configs in groups.values()] == [[0, 1], [0, 1], [0, 1]]
    assert list(labelled_groups(sweep, "growing")) == ["growing"]  # not relabelled as a one-entry file


ZIPPED = """
base: {epochs: 2, train_size: 1000, test_size: 200}
grid: {weight_decay: [0.0, 1.0e-3]}
runs:
  - name: paired
    zip: {seed: [0, 1, 2], l1: [0.0, 1.0e-5, 1.0e-4]}
"""


def test_zipped_axes_expand_in_lockstep_and_shrink_with_an_override(tmp_path):
    path = _write(tmp_path, ZIPPED)
    pairs = [(r.config.weight_decay, r.config.seed, r.config.l1) for r in load_sweep(path).runs]
    assert pairs == [(wd, s, l1) for wd in (0.0, 1e-3) for s, l1 in ((0, 0.0), (1, 1e-5), (2, 1e-4))]
    smoke = load_sweep(path, override={"seed": [0, 2], "epochs": 1})
    assert [(r.config.seed, r.config.l1, r.config.epochs) for r in smoke.runs][:2] == [(0, 0.0, 1), (2, 1e-4, 1)]


def test_the_link_to_a_topology_is_pooled_like_the_seed():
    labels = set(run_labels(load_sweep(CONFIGS / "fixed_topology.yaml")).values())
    assert {"inverted (weight_decay=0.0)", "positive (weight_decay=0.001)", "set (weight_decay=0.0)"} <= labels and len(
        labels
    ) == 8


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "base: {epochs: 2}\ngrid: {wieght_decay: [0.0]}",
            r"sweep.yaml: runs\[0\] \{'wieght_decay': 0.0\}: unknown key\(s\) 'wieght_decay'",
        ),
        ("base: {epochs: -1}", r"sweep.yaml: runs\[0\]: epochs must be > 0"),
        ("grid: {seed: 3}", "axis 'seed' must be a non-empty list"),
        ("runs:\n  - {name: a, zeta: 2.0}", r"sweep.yaml: a: zeta must be in \[0, 1\]"),
        ("runs:\n  - {name: b, after: a}", "after='a' names no earlier entry"),
        ("bas: {}", r"unknown top-level key\(s\) \['bas'\]"),
        ("grid: {seed: [0, 0]}", "same config twice"),
        (
            "grid: {seed: [0, 1]}\nruns:\n  - {name: z, zip: {seed: [0, 1], l1: [0.0, 1.0e-4]}}",
            r"z: zip: \['seed'\] also in grid",
        ),
        (
            "runs:\n  - {name: z, zip: {seed: [0, 1], l1: [0.0]}}",
            "zipped axes must have equal lengths, got seed: 2, l1: 1",
        ),
    ],
)
def test_bad_sweep_files_are_rejected_before_anything_runs(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(_write(tmp_path, text))


def test_the_study_sweeps_are_valid():
    for path in sorted((Path(__file__).parents[2] / "configs").glob("*.yaml")):
        assert load_sweep(path).runs, path


def _results(results_dir: Path) -> dict[str, tuple[pd.DataFrame, dict]]:
    out = {}
    for run_dir in sorted(p for p in results_dir.iterdir() if not p.name.startswith(".")):
        metrics = pd.read_csv(run_dir / "metrics.csv.xz").drop(columns="seconds")
        out[run_dir.name] = (metrics, {"pixel_counts": read_topology(run_dir / "topology.npz")})
    return out


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    path = _write(tmp, TINY)
    assert main([str(path), "--jobs", "2", "--results-dir", str(tmp / "results")]) == 0
    return path, tmp / "results"


@pytest.mark.end_to_end
def test_tiny_sweep_through_submitit_gives_four_finished_runs(finished_sweep):
    path, results = finished_sweep
    expected = {r.config.run_id() for r in load_sweep(path).runs}
    assert set(_results(results)) == expected
    for run_id in expected:
        assert len(pd.read_csv(results / run_id / "metrics.csv.xz")) == 2
        assert not (results / run_id / "checkpoint.pt").exists()


@pytest.mark.end_to_end
def test_rerun_is_a_no_op(finished_sweep, capsys):
    path, results = finished_sweep
    stamps = {p: p.stat().st_mtime_ns for p in results.glob("*/metrics.csv.xz")}
    assert main([str(path), "--jobs", "2", "--results-dir", str(results)]) == 0
    assert "4 done" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in results.glob("*/metrics.csv.xz")}


def job_alive(results: Path):
    """Whether any process still holds a run's lock (i.e. still trains it)."""
    import fcntl

    for lock in results.glob("*/.lock"):
        with open(lock) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                yield False
            except BlockingIOError:
                yield True


@pytest.mark.end_to_end
def test_interrupted_sweep_completes_with_identical_results(finished_sweep, tmp_path):
    path, reference = finished_sweep
    results = tmp_path / "results"
    command = [
        sys.executable,
        "-m",
        "synapses_study.training.sweep",
        str(path),
        "--jobs",
        "1",
        "--results-dir",
        str(results),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(results.glob("*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # a plain kill: the runs in flight must stop too
    proc.wait(timeout=60)
    time.sleep(1)
    assert not any(job_alive(results)), "the sweep left a run training after it was killed"
    unfinished = [r for r in load_sweep(path).runs if not (results / r.config.run_id() / "model.pt").exists()]
    assert unfinished, "the sweep finished before it could be interrupted"
    assert main([str(path), "--jobs", "2", "--results-dir", str(results)]) == 0
    ours, theirs = _results(results), _results(reference)
    assert set(ours) == set(theirs)
    for run_id, (metrics, topology) in theirs.items():
        pd.testing.assert_frame_equal(ours[run_id][0], metrics, check_exact=True)
        assert all(np.array_equal(ours[run_id][1][k], topology[k]) for k in topology)


@pytest.mark.end_to_end
def test_dry_run_lists_states(finished_sweep, tmp_path, capsys):
    path, results = finished_sweep
    assert main([str(path), "--dry-run", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("sparsenet")]
    assert len(rows) == 4 and all(row[1:5] == ["done", "2", "of", "2"] for row in rows)
    seconds = sum(pd.read_csv(results / row[0] / "metrics.csv.xz")["seconds"].sum() for row in rows)
    assert (
        out.splitlines()[-1]
        == f"4 done; 8 of 8 epochs recorded, {seconds / 3600:.1f} hours of training (summed over runs)"
    )
    # a run stopped part way (in a copy: the fixture is shared): resumable, its epochs counted
    shutil.copytree(results, tmp_path / "results")
    results = tmp_path / "results"
    stopped = results / rows[0][0]
    (stopped / "checkpoint.pt").write_bytes(b"stands for a checkpoint")
    (stopped / "metrics.csv").write_text("".join(read_text(stopped / "metrics.csv.xz").splitlines(True)[:2]))
    (stopped / "metrics.csv.xz").unlink()
    (stopped / "manifest.json").unlink()
    assert main([str(path), "--dry-run", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith(rows[0][0]))
    assert line.split()[1:5] == ["resume", "1", "of", "2"] and "3 done, 1 resume; 7 of 8 epochs recorded" in out


def test_bad_file_is_a_one_line_error(tmp_path, capsys):
    path = _write(tmp_path, "base: {epochs: 0}")
    with pytest.raises(SystemExit) as info:
        main([str(path)])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.end_to_end
def test_a_failing_run_does_not_stop_the_others(tmp_path, capsys):
    text = """
base: {epochs: 1, train_size: 500, test_size: 100}
runs:
  - {name: broken, lr: 1.0e+12}
  - {name: fine}
  - {name: blocked, init_from: no_such_run}
"""
    path = _write(tmp_path, text)
    assert main([str(path), "--jobs", "2", "--results-dir", str(tmp_path / "results")]) == 1
    out = capsys.readouterr().out
    broken, fine, blocked = (r.config.run_id() for r in load_sweep(path).runs)
    assert f"{fine}  finished" in out
    line = next(l for l in out.splitlines() if l.startswith(broken))
    assert "failed" in line and ".sweep-logs" in line and "DivergedError" in line and "diverged at epoch 1" in line
    line = next(l for l in out.splitlines() if l.startswith(blocked))
    assert "blocked" in line and "needs no_such_run, which is not a finished run there" in line
    assert "1 finished, 1 failed, 1 blocked" in out


def test_slurm_executor_submits_one_job_array(tmp_path, monkeypatch):
    # A stand-in sbatch records what would reach Slurm.
    from synapses_study.training import sweep as sweep_module

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f"#!/bin/sh\ncp \"$1\" {tmp_path}/submitted.sh\necho 'Submitted batch job 4242'\n")
    sbatch.chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/sh\n")  # submitit checks that srun exists
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    path = _write(tmp_path, TINY)
    args = sweep_module.argparse.Namespace(executor="slurm", time=90, cpus_per_task=1, jobs=2, partition="cpu", gpus=1)
    executor = sweep_module._executor(args, tmp_path / "logs")
    jobs = sweep_module.submit_array(executor, load_sweep(path).runs, tmp_path / "results")
    assert [job.job_id for job in jobs] == [f"4242_{i}" for i in range(4)]
    script = (tmp_path / "submitted.sh").read_text()
    for line in (
        "#SBATCH --array=0-3%2",
        "#SBATCH --partition=cpu",
        "#SBATCH --time=90",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --gpus-per-node=1",
    ):
        assert line in script, line


def test_duplicate_entry_names_are_refused(tmp_path):
    path = _write(tmp_path, "runs:\n  - {name: a, epochs: 1}\n  - {name: a, epochs: 2}\n  - {name: b, after: a}\n")
    with pytest.raises(ConfigError, match=f"{path}: two entries are named 'a'"):
        load_sweep(path)


def test_exponent_without_a_dot_is_a_number(tmp_path):
    path = _write(tmp_path, "base: {epochs: 1}\ngrid: {weight_decay: [1e-3, 1.0e-2]}\n")
    assert [r.config.weight_decay for r in load_sweep(path).runs] == [1e-3, 1e-2]


def test_nan_in_a_sweep_file_is_refused(tmp_path):
    path = _write(tmp_path, "base: {epochs: 1, weight_decay: .nan}\n")
    with pytest.raises(ConfigError, match="weight_decay must be a finite number"):
        load_sweep(path)


def test_binary_sweep_file_is_a_config_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="cannot read the sweep file"):
        load_sweep(path)
