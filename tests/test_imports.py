"""The study's imports run one way: nothing that reads or reports results trains, one module
(evaluation) rebuilds a finished run's network for the tables, and the library is used
through its public names only."""

import ast
from pathlib import Path

import pytest

STUDY = Path(__file__).parents[1] / "src" / "synapses_study"
TRAINING = {"engine", "sweep"}  # train networks (sweep launches runs; engine trains them)
READING = [
    "results",
    "metrics",
    "analysis",
    "tables",
    "report",
    "facts",
    "mechanism",
    "protocol",
    "explorer",
    "notebook",
    "figure_runs",
    "selection",
    "animate",
    "plotting",
    "survivors",
    "demography",
    "stats",
    "markers",
]


def study_imports(module: str) -> set[str]:
    """The study modules ``module`` imports, anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(ast.parse((STUDY / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("synapses_study."):
                found.add(node.module.split(".")[1])
    return found & {p.stem for p in STUDY.glob("*.py")}


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for name in study_imports(todo.pop()) - seen:
            seen.add(name)
            todo.append(name)
    return seen


@pytest.mark.parametrize("module", READING)
def test_reading_and_reporting_never_reach_training(module):
    assert not reachable(module) & TRAINING, f"{module} reaches {sorted(reachable(module) & TRAINING)}"


def test_only_training_and_evaluation_rebuild_networks():
    builders = {p.stem for p in STUDY.glob("*.py") if "build" in study_imports(p.stem)}
    assert builders == {"engine", "evaluation"}


def test_the_study_has_no_import_cycle():
    for path in STUDY.glob("*.py"):
        assert path.stem not in reachable(path.stem), f"{path.stem} imports itself through others"


def test_the_study_uses_the_library_through_its_public_names():
    import synapses

    for path in sorted(STUDY.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("synapses."), f"{path.name} imports from {node.module}"
                if node.module == "synapses":
                    assert {alias.name for alias in node.names} <= set(synapses.__all__), path.name
