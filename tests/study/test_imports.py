"""The study's imports run one way: its wings are ordered, foundation first, and a module
imports only from its own wing and the wings before it; nothing that reads or reports
results trains; one module (reading.evaluation) rebuilds a finished run's network for the
tables; and the library is used through its public names only."""

import ast
from pathlib import Path

import pytest

STUDY = Path(__file__).parents[2] / "src" / "synapses_study"
# foundation first, as README's layout lists them
WINGS = ["measures", "setup", "runs", "training", "reading", "mechanism", "forecast", "writeup", "figures", "bench"]
TRAINING = {"training.engine", "training.sweep"}  # train networks (sweep launches runs; engine trains them)
READING = [
    "reading.results",
    "reading.metrics",
    "measures.analysis",
    "writeup.tables",
    "writeup.report",
    "writeup.facts",
    "mechanism.account",
    "mechanism.protocol",
    "figures.explorer",
    "figures.notebook",
    "figures.figure_runs",
    "reading.selection",
    "figures.animate",
    "figures.plotting",
    "measures.survivors",
    "reading.demography",
    "reading.stats",
    "writeup.markers",
]


def modules() -> list[str]:
    """Every study module as ``wing.name`` (the wings' ``__init__`` and ``__main__`` left out)."""
    return sorted(
        f"{path.parent.name}.{path.stem}"
        for wing in WINGS
        for path in (STUDY / wing).glob("*.py")
        if not path.stem.startswith("__")
    )


def study_imports(module: str) -> set[str]:
    """The study modules ``module`` imports, anywhere in it (functions included), as ``wing.name``."""
    wing, _ = module.split(".")
    found = set()
    for node in ast.walk(ast.parse((STUDY / f"{module.replace('.', '/')}.py").read_text())):
        if isinstance(node, ast.Import):  # import synapses_study.wing.name
            found |= {".".join(a.name.split(".")[1:3]) for a in node.names if a.name.startswith("synapses_study.")}
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            parts = (node.module or "").split(".")
            if parts[0] != "synapses_study":
                continue
            parts, base = parts[1:], None
        elif node.level == 2 and not node.module:  # from .. import wing
            found |= {f"{a.name}.{n.stem}" for a in node.names for n in (STUDY / a.name).glob("*.py")}
            continue
        else:
            parts = (node.module or "").split(".") if node.module else []
            base = wing if node.level == 1 else None
        if base is not None:  # from .name import ... / from . import name
            found |= {f"{base}.{parts[0]}"} if parts else {f"{base}.{a.name}" for a in node.names}
        elif len(parts) >= 2:  # from ..wing.name import ... / synapses_study.wing.name
            found.add(f"{parts[0]}.{parts[1]}")
        elif len(parts) == 1:  # from ..wing import name
            found |= {f"{parts[0]}.{a.name}" for a in node.names}
    return found & set(modules())


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for name in study_imports(todo.pop()) - seen:
            seen.add(name)
            todo.append(name)
    return seen


def test_every_study_module_lives_in_a_wing():
    assert sorted(p.name for p in STUDY.glob("*.py")) == ["__init__.py"]
    assert sorted(p.name for p in STUDY.iterdir() if p.is_dir() and (p / "__init__.py").exists()) == sorted(WINGS)


@pytest.mark.parametrize("module", modules())
def test_a_module_imports_only_from_its_wing_and_the_wings_before_it(module):
    rank = WINGS.index(module.split(".")[0])
    later = sorted(name for name in study_imports(module) if WINGS.index(name.split(".")[0]) > rank)
    assert not later, f"{module} imports {later}, from later wings"


def test_the_import_graph_is_read_from_every_form_of_import():
    assert "measures.topology" in study_imports("training.engine")  # from ..measures.topology import
    assert "mechanism.account" in study_imports("writeup.facts")  # from ..mechanism import account
    assert "setup.config" in study_imports("setup.sweep_file")  # from .config import


def test_the_import_graph_reads_plain_imports_and_whole_wings(tmp_path, monkeypatch):
    import sys

    for wing, name, code in [
        ("measures", "topology", ""),
        ("runs", "run_dir", ""),
        ("setup", "config", "import synapses_study.measures.topology\nfrom .. import runs\n"),
    ]:
        (tmp_path / wing).mkdir(exist_ok=True)
        (tmp_path / wing / f"{name}.py").write_text(code)
    monkeypatch.setattr(sys.modules[__name__], "STUDY", tmp_path)
    assert study_imports("setup.config") == {"measures.topology", "runs.run_dir"}


def test_readme_lists_the_wings_in_their_order():
    readme = (STUDY.parents[1] / "README.md").read_text()
    positions = [readme.index(f"\n  {wing}/") for wing in WINGS]
    assert positions == sorted(positions)


@pytest.mark.parametrize("module", READING)
def test_reading_and_reporting_never_reach_training(module):
    assert not reachable(module) & TRAINING, f"{module} reaches {sorted(reachable(module) & TRAINING)}"


def test_only_training_and_evaluation_rebuild_networks():
    builders = {m for m in modules() if "training.build" in study_imports(m)}
    assert builders == {"training.engine", "reading.evaluation"}


def test_the_study_has_no_import_cycle():
    for module in modules():
        assert module not in reachable(module), f"{module} imports itself through others"


def test_the_study_uses_the_library_through_its_public_names():
    import synapses

    for path in sorted(STUDY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("synapses.") for a in node.names), f"{path.name} imports a submodule"
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("synapses."), f"{path.name} imports from {node.module}"
                if node.module == "synapses":
                    assert {alias.name for alias in node.names} <= set(synapses.__all__), path.name
