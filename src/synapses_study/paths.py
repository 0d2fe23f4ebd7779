"""Where the study's files live (one place, so modules agree).

The study reads and writes a checkout of this repository: ``configs/``, ``results/``,
``figures/``, ``data/mnist/``. Which one is decided when this module is first imported,
never by where the package is installed (a non-editable install lives in a virtual
environment): ``$SYNAPSES_ROOT`` when set, else the nearest folder at or above the working
directory that holds ``configs/`` and ``data/mnist/`` (so notebooks, which run in
``notebooks/``, find it too), else the working directory itself.
"""

from __future__ import annotations

import os
from pathlib import Path


def study_root() -> Path:
    """The checkout the study works in (see the module's docstring)."""
    explicit = os.environ.get("SYNAPSES_ROOT")
    if explicit:
        return Path(explicit).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "configs").is_dir() and (folder / "data" / "mnist").is_dir():
            return folder
    return here


REPO_ROOT = study_root()
RESULTS = REPO_ROOT / "results"
CONFIGS = REPO_ROOT / "configs"
FIGURES = REPO_ROOT / "figures"
MNIST_DIR = REPO_ROOT / "data" / "mnist"
CACHE = REPO_ROOT / ".cache"
NOTEBOOKS = REPO_ROOT / "notebooks"
# smoke-profile notebook runs: their executed copies, figures and tiny runs, never in figures/ or results/
SMOKE_OUTPUT = NOTEBOOKS / "executed" / "smoke"


def results_root(results_dir: str | Path | None = None) -> Path:
    """``results_dir`` as a path, or the checkout's ``results/`` when it is ``None``."""
    return Path(results_dir) if results_dir is not None else RESULTS
