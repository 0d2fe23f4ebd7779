"""The notebooks: committed clean, parameterized, and runnable headlessly (smoke profile)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.end_to_end

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

EXPECTED_FIGURES = {
    "mnist_demo": ["smoke_demo_weight_histograms", "smoke_demo_connections_per_input", "smoke_demo_sparsenet_history", "smoke_demo_pixel_heatmap", "smoke_demo_evolnet"],
    "regularization_study": ["study_2ep_smoke_heatmaps", "study_2ep_smoke_trend", "study_2ep_smoke_center_ratio", "study_2ep_smoke_curves", "study_2ep_smoke_ink_correlation", "study_2ep_smoke_dose_response"],
    "benchmark": ["smoke_benchmark"],
    "pruning_mechanism": ["mechanism_smoke_pruning"],
    "extensions": ["extensions_smoke_overview", "extensions_smoke_heatmaps"],
    "evolnet_triplet": ["triplet_smoke_curves", "triplet_smoke_heatmaps"],
    "summary": ["summary_smoke_topology", "summary_smoke_seeds", "summary_smoke_pruning", "summary_smoke_heatmaps"],
    "explore": [],  # interactive: nothing saved (its browser test is tests/test_browser.py)
}


def test_every_notebook_is_covered():
    assert sorted(nb.stem for nb in NOTEBOOKS) == sorted(EXPECTED_FIGURES)


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
    out = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(path)], capture_output=True, text=True, check=True).stdout
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    names = [line.split(":")[0].split("=")[0].strip() for line in "".join(cell["source"]).splitlines() if line and not line.startswith("#")]
    for name in names:
        assert f"  {name}: " in out, name
    assert "Unknown type" not in out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_headlessly_with_smoke_parameters(path, tmp_path):
    import papermill

    figures = tmp_path / "figures"
    parameters = {"profile": "smoke", "figures_dir": str(figures)}
    if path.stem != "benchmark":
        parameters["results_dir"] = str(tmp_path / "results")
    if path.stem == "explore":  # reads committed results only; an empty folder shows its message
        parameters = {"results_dir": str(tmp_path / "results")}
    # from another working directory: paths must resolve from the repository root
    papermill.execute_notebook(str(path), str(tmp_path / path.name), parameters=parameters, kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    for name in EXPECTED_FIGURES[path.stem]:
        png = figures / f"{name}.png"
        assert png.exists(), name
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000


def test_extensions_notebook_takes_another_sweep_file(tmp_path):
    import papermill

    parameters = {"profile": "smoke", "sweep_name": "growing_l2", "figures_dir": str(tmp_path / "figures"), "results_dir": str(tmp_path / "results")}
    papermill.execute_notebook(str(NOTEBOOKS[0].parent / "extensions.ipynb"), str(tmp_path / "out.ipynb"), parameters=parameters, kernel_name="python3", progress_bar=False)
    for name in ("growing_l2_smoke_overview", "growing_l2_smoke_heatmaps"):
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC


BAD_PARAMETERS = [
    ("regularization_study", {"profile": "nonsense"}, "parameter profile must be one of 'smoke', 'default', 'paper', got 'nonsense'"),
    ("evolnet_triplet", {"seeds": 3}, "parameter seeds must be a non-empty list, each an integer >= 0 or None, got 3"),
    ("pruning_mechanism", {"blank_below": -1}, r"parameter blank_below must be a number in (0, 1], got -1"),
    ("benchmark", {"threads": 0}, "parameter threads must be an integer >= 1 or None, got 0"),
    ("extensions", {"sweep_name": "nope"}, "parameter sweep_name must be one of"),
    ("mnist_demo", {"epochs": -2}, "parameter epochs must be an integer >= 1 or None, got -2"),
]


@pytest.mark.parametrize("name, parameters, message", BAD_PARAMETERS, ids=[b[0] for b in BAD_PARAMETERS])
def test_bad_parameters_stop_in_the_first_cell_with_the_allowed_values(name, parameters, message, tmp_path):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    path = NOTEBOOKS[0].parent / f"{name}.ipynb"
    with pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), parameters=parameters, kernel_name="python3", progress_bar=False)
    assert info.value.ename == "ParameterError" and message in info.value.evalue
    assert info.value.exec_count <= 3  # stopped before any work: parameters, injected parameters, checks
