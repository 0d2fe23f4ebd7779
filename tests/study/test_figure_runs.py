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


def test_prerequisites_are_the_files_that_change_a_run_output():
    run = next(r for r in fr.figure_runs() if r.name == "pruning_mechanism@mechanism")
    files = fr.prerequisites(run)
    assert files[:3] == [
        "notebooks/runs/pruning_mechanism@mechanism.yaml",
        "notebooks/pruning_mechanism.ipynb",
        "configs/mechanism.yaml",
    ]
    assert "configs/reproduction.yaml" not in files  # only the sweep it reads
    assert "src/synapses_study/figures/plotting.py" in files
    metrics = [f for f in files if f.endswith("metrics.csv.xz")]
    assert len(metrics) == 6 and all((ROOT / f).exists() for f in metrics)  # 3 decays x 2 seeds, committed
    assert sorted(f.replace("pruning.npz", "metrics.csv.xz") for f in files if f.endswith("pruning.npz")) == sorted(
        metrics
    )  # all recorded
    assert not any(
        f.endswith(("metrics.csv", "metrics.csv.xz", "pruning.npz")) for f in fr.prerequisites(run, with_results=False)
    )


def test_files_a_run_reads_beside_its_runs_are_prerequisites_too():
    run = next(r for r in fr.figure_runs() if r.name == "feature_selection")
    assert run.reads == ("results/feature_selection.csv",)
    assert "results/feature_selection.csv" in fr.prerequisites(run)
    assert "results/feature_selection.csv" not in fr.prerequisites(run, with_results=False)


def test_make_rules_list_every_executed_copy(tmp_path):
    runs = fr.figure_runs()
    rules = fr.make_rules(runs, "out", with_results=False)
    assert rules.splitlines()[0] == "FIGURE_RUNS := " + " ".join(f"out/{r.name}.ipynb" for r in runs)
    assert all(
        any(line.startswith(f"out/{r.name}.ipynb: notebooks/runs/{r.name}.yaml ") for line in rules.splitlines())
        for r in runs
    )


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
