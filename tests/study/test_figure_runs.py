"""The declared figure runs (notebooks/runs/): validation, make prerequisites, README table."""

from pathlib import Path

import pytest

from synapses_study.figures import figure_runs as fr
from synapses_study.setup.config import ConfigError
from synapses_study.setup.sweep_file import load_sweep_spec

ROOT = Path(__file__).parents[2]


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_every_committed_run_names_real_parameters_and_figures():
    runs = fr.figure_runs()
    assert len({run.name for run in runs}) == len(runs) >= 10
    figures = [f for run in runs for f in run.figures]
    assert len(set(figures)) == len(figures), "two runs write the same figure"
    for run in runs:
        if "sweep" in run.parameters:
            load_sweep_spec(run.parameters["sweep"])  # names a sweep (and entry) of configs/


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("nowhere@x", "figures: {a.png: x}\n", "no notebook nowhere.ipynb"),
        (
            "pruning_mechanism@x",
            "parameters: {sweeps: mechanism}\nfigures: {a.png: x}\n",
            r"has no parameter\(s\) \['sweeps'\]",
        ),
        ("pruning_mechanism@x", "parameters: {sweep: mechanism}\n", "figures must list"),
        ("pruning_mechanism@x", "parameters: {sweep: mechanism}\nfigures: {a.gif: x}\n", "figures must list"),
        (
            "pruning_mechanism@x",
            "params: {}\n",
            r"expected a mapping with keys \['figures', 'parameters', 'reads'\], not \['params'\]",
        ),
    ],
)
def test_a_bad_run_file_is_refused_with_its_name(tmp_path, name, text, message):
    path = _write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=message):
        fr.load_figure_run(path)


def test_inputs_are_the_files_beyond_code_that_change_a_run_output():
    run = next(r for r in fr.figure_runs() if r.name == "pruning_mechanism@mechanism")
    files = [str(f.relative_to(ROOT)) for f in fr.inputs(run)]
    assert files[0] == "configs/mechanism.yaml"
    assert "configs/reproduction.yaml" not in files  # only the sweep it reads
    metrics = [f for f in files if f.endswith("metrics.csv.xz")]
    assert len(metrics) == 6 and all((ROOT / f).exists() for f in metrics)  # 3 decays x 2 seeds, committed
    assert sorted(f.replace("pruning.npz", "metrics.csv.xz") for f in files if f.endswith("pruning.npz")) == sorted(
        metrics
    )  # all recorded
    assert [str(f.relative_to(ROOT)) for f in fr.inputs(run, with_results=False)] == ["configs/mechanism.yaml"]


def test_files_a_run_reads_beside_its_runs_are_inputs_too():
    run = next(r for r in fr.figure_runs() if r.name == "feature_selection")
    assert run.reads == ("results/feature_selection.csv",)
    assert ROOT / "results/feature_selection.csv" in fr.inputs(run)
    assert ROOT / "results/feature_selection.csv" not in fr.inputs(run, with_results=False)


def test_a_digest_is_rewritten_only_when_what_its_run_reads_changed(tmp_path):
    import hashlib
    import os

    runs = [r for r in fr.figure_runs() if r.name in ("mnist_demo", "pruning_mechanism@mechanism")]
    fr.write_digests(runs, tmp_path, with_results=False)
    digest = tmp_path / "inputs" / "pruning_mechanism@mechanism.digest"
    sweep = (ROOT / "configs" / "mechanism.yaml").read_bytes()
    assert digest.read_text() == f"{hashlib.sha256(sweep).hexdigest()}  configs/mechanism.yaml\n"
    os.utime(digest, ns=(1, 1))
    fr.write_digests(runs, tmp_path, with_results=False)
    assert digest.stat().st_mtime_ns == 1  # unchanged: make keeps the executed copy
    digest.write_text("an older input\n")
    fr.write_digests(runs, tmp_path, with_results=False)
    assert digest.read_text().endswith("configs/mechanism.yaml\n") and digest.stat().st_mtime_ns > 1


def test_make_has_one_rule_per_run_file_and_no_generated_makefile(tmp_path):
    """`make -n` lists one execution per run file, each with its own notebook, from the
    Makefile alone."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("needs make")
    dry = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "figure-runs", "PROFILE=smoke", f"EXECUTED={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    executed = [line for line in dry.stdout.splitlines() if "figure_runs execute" in line]
    assert sorted(line.split(" execute ")[1].split()[0] for line in executed) == sorted(
        r.name for r in fr.figure_runs()
    )
    assert "figures.mk" not in (ROOT / "Makefile").read_text() and "$(MAKE)" not in (ROOT / "Makefile").read_text()


def test_table_command_regenerates_and_checks(tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- figure table: generated -->\n| stale |\n<!-- /figure table -->\nend\n")
    assert fr.main(["table", str(page), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert fr.main(["table", str(page)]) == 0
    assert fr.figure_table(fr.figure_runs()) in page.read_text() and page.read_text().endswith(
        "<!-- /figure table -->\nend\n"
    )
    assert fr.main(["table", str(page), "--check"]) == 0
