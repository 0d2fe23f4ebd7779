"""The notebooks: committed clean, parameterized, and runnable headlessly (smoke profile)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.end_to_end

from synapses_study.figures.figure_runs import figure_runs, figure_table

ROOT = Path(__file__).parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RUNS = figure_runs()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
INTERACTIVE = {"explore"}  # no figures to make: its browser test is tests/study/test_browser.py


def test_every_notebook_has_a_figure_run_or_is_interactive():
    assert {run.notebook for run in RUNS} | INTERACTIVE == {nb.stem for nb in NOTEBOOKS}


def test_readme_figure_table_is_generated_from_the_runs():
    readme = (ROOT / "docs" / "figures.md").read_text()
    assert figure_table(RUNS) in readme, "python -m synapses_study.figures.figure_runs table docs/figures.md"


def test_no_run_set_restated_in_the_makefile():
    makefile = (ROOT / "Makefile").read_text()
    assert "papermill" not in makefile and "-p sweep" not in makefile


def jupyterlab_save(text: str) -> str:
    """What JupyterLab writes when a user opens the notebook ``text`` and it autosaves: the
    kernel's language_info and kernelspec set, the current nbformat with cell ids."""
    import nbformat

    nb = nbformat.reads(text, as_version=4)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "version": "3.11.7",
    }
    return nbformat.writes(nbformat.validator.normalize(nb)[1] if hasattr(nbformat.validator, "normalize") else nb)


def git_clean_filter(text: str) -> str:
    """The clean filter ``make setup`` installs (nbstripout, language_info stripped), as git
    runs it on ``git status`` and ``git add``."""
    makefile = (ROOT / "Makefile").read_text()
    keys = makefile.split("filter.nbstripout.extrakeys ", 1)[1].split()[0]
    return subprocess.run(
        [sys.executable, "-m", "nbstripout", "--extra-keys", keys],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_opening_a_notebook_in_jupyterlab_leaves_git_clean(path):
    """git compares the clean filter's output of the working file with the committed one:
    after JupyterLab's autosave it must be the committed bytes, and so must the committed
    file itself (committed through the filter)."""
    committed = path.read_text()
    assert git_clean_filter(committed) == committed
    assert git_clean_filter(jupyterlab_save(committed)) == committed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean_with_one_parameters_cell(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    # no training loop or model class defined in a notebook: those belong in the package
    source = "\n".join("".join(c["source"]) for c in code)
    assert "class " not in source and ".backward()" not in source and "optimizer.step" not in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_help_lists_every_parameter_with_its_meaning(path):
    out = subprocess.run(
        [sys.executable, "-m", "papermill", "--help-notebook", str(path)], capture_output=True, text=True, check=True
    ).stdout
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    names = [
        line.split(":")[0].split("=")[0].strip()
        for line in "".join(cell["source"]).splitlines()
        if line and not line.startswith("#")
    ]
    for name in names:
        assert f"  {name}: " in out, name
    assert "Unknown type" not in out


# Every notebook runs once in `make test`, with its first run; its further runs differ only
# in their sweep file (checked by tests/study/test_figure_runs.py) and run under `make test-all`.
FIRST_RUN = {}
for _run in RUNS:
    FIRST_RUN.setdefault(_run.notebook, _run.name)
SMOKE_RUNS = [
    pytest.param(r, id=r.name, marks=() if FIRST_RUN[r.notebook] == r.name else pytest.mark.figure_variant)
    for r in RUNS
]


SMOKE_DIR = ROOT / "notebooks" / "executed" / "smoke"


def up_to_date_smoke_copy(run) -> Path | None:
    """The smoke copy of ``run`` that `make site PROFILE=smoke` (or `make figures
    PROFILE=smoke`) executed, where make itself holds it up to date with every prerequisite
    (notebook, run file, sweep files, the library's and the study's code), else None. CI builds
    the site before the tests: its copies are this test's executions, not done twice."""
    import shutil

    copy = SMOKE_DIR / f"{run.name}.ipynb"
    if not copy.exists() or shutil.which("make") is None:
        return None
    question = subprocess.run(
        ["make", "-q", str(copy.relative_to(ROOT)), "PROFILE=smoke"], cwd=ROOT, capture_output=True
    )
    return copy if question.returncode == 0 else None


@pytest.mark.parametrize("run", SMOKE_RUNS)
def test_figure_run_executes_headlessly_with_the_smoke_profile(run, tmp_path):
    """Each run of notebooks/runs/, as `make figures PROFILE=smoke` executes it, writes every
    figure its run file lists (read from the pipeline's own up-to-date copy where there is
    one, else executed here)."""
    from datetime import datetime

    from synapses_study.figures.figure_runs import execute

    copy = up_to_date_smoke_copy(run)
    if copy is not None:
        figures = SMOKE_DIR / "figures"
        executed = json.loads(copy.read_text())
        # papermill writes the copy as it goes and on an error too: only a whole, clean run counts
        assert not executed["metadata"]["papermill"].get("exception"), f"{copy} ended in an error"
        statuses = {cell.get("metadata", {}).get("papermill", {}).get("status") for cell in executed["cells"]}
        assert statuses <= {"completed", None} and "completed" in statuses, f"{copy} did not run to the end"
        started = datetime.fromisoformat(executed["metadata"]["papermill"]["start_time"])
        for name in run.figures:  # written by that execution, not left from an earlier one
            assert (figures / name).stat().st_mtime >= started.timestamp(), name
    else:
        figures = tmp_path / "figures"
        extra = {"figures_dir": str(figures)} | (
            {"results_dir": str(tmp_path / "results")} if run.notebook != "benchmark" else {}
        )
        execute(run, tmp_path / f"{run.name}.ipynb", "smoke", **extra)
    for name in run.figures:
        written = (figures / name).read_bytes()
        assert (
            written[:8] == PNG_MAGIC and len(written) > 5000 if name.endswith(".png") else written.startswith(b"|")
        ), name


def test_explore_runs_headlessly_on_an_empty_results_folder(tmp_path):
    """The explorer reads committed results only; an empty folder shows its message."""
    import papermill

    out = tmp_path / "explore.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "explore.ipynb"),
        str(out),
        parameters={"results_dir": str(tmp_path / "results")},
        kernel_name="python3",
        cwd=str(ROOT / "notebooks"),
        progress_bar=False,
    )


BAD_PARAMETERS = [
    (
        "regularization_study",
        {"profile": "nonsense"},
        "parameter profile must be one of 'smoke', 'default', got 'nonsense'",
    ),
    ("regularization_study", {"sweep": "sweep155/nope"}, "sweep155.yaml has no entry 'nope' (entries: runs[0])"),
    ("evolnet_triplet", {"sweep": 3}, 'parameter sweep must be a sweep of configs/ as "name" or "name/entry"'),
    ("pruning_mechanism", {"blank_below": -1}, r"parameter blank_below must be a number in (0, 1], got -1"),
    ("benchmark", {"threads": 0}, "parameter threads must be an integer >= 1 or None, got 0"),
    ("extensions", {"sweep": "nope"}, "no sweep file 'nope' in"),
    ("mnist_demo", {"epochs": -2}, "parameter epochs must be an integer >= 1 or None, got -2"),
    ("mnist_demo", {"seed": 2**32}, "parameter seed must be an integer in [0, 2**32), got 4294967296"),
    (
        "regularization_study",
        {"profile": "smoke", "heatmap_epochs": [1, 50], "results_dir": "unused"},
        "parameter heatmap_epochs must list epochs in 0..3 (the runs have 3 epochs), got [50]",
    ),
]


@pytest.mark.parametrize("name, parameters, message", BAD_PARAMETERS, ids=[b[0] for b in BAD_PARAMETERS])
def test_bad_parameters_stop_in_the_first_cell_with_the_allowed_values(name, parameters, message, tmp_path):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    path = NOTEBOOKS[0].parent / f"{name}.ipynb"
    with pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(
            str(path), str(tmp_path / "out.ipynb"), parameters=parameters, kernel_name="python3", progress_bar=False
        )
    assert info.value.ename == "ParameterError" and message in info.value.evalue
    assert info.value.exec_count <= 3  # stopped before any work: parameters, injected parameters, checks


def test_committed_figures_are_exactly_those_the_write_up_and_readme_show():
    """figures/ holds in git only what a reader sees on the page (the rest is regenerated by
    `make -j2 figures`): the images the pages embed, no list kept anywhere else (figures/ is
    ignored; a shown figure is added with git add -f)."""
    import re
    import shutil

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    pages = [ROOT / "README.md", ROOT / "regularization.md", *sorted((ROOT / "docs").glob("*.md"))]
    shown = {m for page in pages for m in re.findall(r"!\[.*?\]\((?:\.\./)?(figures/[^)]+)\)", page.read_text())}
    tracked = set(
        subprocess.run(
            ["git", "ls-files", "figures"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert tracked == shown


def test_a_misspelt_parameter_is_refused_before_the_notebook_runs(tmp_path, capsys):
    from synapses_study.figures import figure_runs

    run = next(r for r in RUNS if r.notebook == "regularization_study")
    with pytest.raises(
        ValueError,
        match=(
            "regularization_study.ipynb has no parameter\\(s\\) heatmap_epoch; its parameters: profile, sweep, "
            "heatmap_epochs"
        ),
    ):
        figure_runs.execute(run, tmp_path / "out.ipynb", "smoke", heatmap_epoch=[1])
    assert not (tmp_path / "out.ipynb").exists()
