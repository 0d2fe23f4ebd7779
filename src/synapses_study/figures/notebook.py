"""What a notebook sets up first, one way for all: where its figures and runs go, what its
profile changes, and the runs a ``sweep`` parameter names.

    nb = setup(profile, figures_dir, results_dir, prefix)
    sweep = nb.sweep("mechanism")          # configs/mechanism.yaml (smoke: scaled down)
    ...
    nb.save(fig, "pruning")                 # <figures_dir>/<prefix>_pruning.png

The smoke profile shrinks every run read from ``configs/`` (``SMOKE_OVERRIDE``) and keeps
its figures and runs under ``notebooks/executed/smoke/`` unless told otherwise, so a quick
check never overwrites the study's figures or adds tiny runs to ``results/``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.figure

from ..setup.config import ExperimentConfig
from ..setup.params import ParameterError
from ..setup.paths import FIGURES, RESULTS, SMOKE_OUTPUT
from ..setup.sweep_file import SMOKE_OVERRIDE, Sweep, load_sweep_spec, matching
from .plotting import save_figure


@dataclass(frozen=True)
class NotebookSetup:
    """A notebook's profile, folders and figure prefix (see :func:`setup`)."""

    profile: str
    figures_dir: Path
    results_dir: Path
    prefix: str

    @property
    def smoke(self) -> bool:
        return self.profile == "smoke"

    @property
    def override(self) -> dict[str, Any] | None:
        """What the profile changes in the runs of a sweep file (``None``: nothing)."""
        return SMOKE_OVERRIDE if self.smoke else None

    def sweep(self, spec: str) -> Sweep:
        """The runs of ``"name"`` or ``"name/entry"`` in ``configs/``, as the profile runs them."""
        return load_sweep_spec(spec, self.override)

    def select(self, spec: str, **fields: object) -> list[ExperimentConfig]:
        """The configs of a sweep (``"name[/entry]"``) whose fields equal ``fields``."""
        return matching(self.sweep(spec), **fields)

    def save(self, fig: matplotlib.figure.Figure, name: str) -> Path:
        """``fig`` as ``<figures_dir>/<prefix>_<name>.png``."""
        return save_figure(fig, f"{self.prefix}_{name}" if self.prefix else name, self.figures_dir)


def _assigned(source: str) -> set[str]:
    """The names a cell's code assigns at its top level."""
    names = set()
    for node in ast.parse(source).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def check_known_parameters(history: list[str] | None = None) -> None:
    """Refuse parameters that papermill injected but the notebook does not have (a misspelt
    ``-p profil smoke`` would otherwise run the default profile without a word).

    ``history``: the cells run so far (default: IPython's ``In``; outside IPython nothing is
    checked). The notebook's parameters cell starts with ``# Parameters (papermill``, the
    cell papermill injects after it with ``# Parameters`` alone.

    Raises:
        ParameterError: naming the unknown parameters and the notebook's own.
    """
    if history is None:
        try:
            from IPython import get_ipython  # only inside a kernel; the study runs without it
        except ImportError:
            return
        shell = get_ipython()
        history = list(shell.user_ns.get("In", [])) if shell is not None else []
    defaults = next((cell for cell in history if cell.startswith("# Parameters (papermill")), None)
    injected = [cell for cell in history if cell.split("\n", 1)[0].strip() == "# Parameters"]
    if defaults is None or not injected:
        return
    known = _assigned(defaults)
    if unknown := sorted(_assigned(injected[-1]) - known):
        raise ParameterError(
            f"unknown notebook parameter(s) {', '.join(unknown)}; this notebook's parameters: "
            f"{', '.join(sorted(known))}"
        )


def setup(
    profile: str, figures_dir: str | None = None, results_dir: str | None = None, prefix: str = ""
) -> NotebookSetup:
    """The setup of a notebook run with these parameters (``None``: the profile's folder).

    Raises:
        ParameterError: papermill was given a parameter the notebook does not have.
    """
    check_known_parameters()
    smoke = profile == "smoke"
    return NotebookSetup(
        profile,
        Path(figures_dir) if figures_dir else (SMOKE_OUTPUT / "figures" if smoke else FIGURES),
        Path(results_dir) if results_dir else (SMOKE_OUTPUT / "results" if smoke else RESULTS),
        prefix,
    )
