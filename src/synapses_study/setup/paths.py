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


def find_study_root() -> tuple[Path, str]:
    """The checkout the study works in (see the module's docstring), and how it was found,
    in words (a run says where it writes, so a wrong ``$SYNAPSES_ROOT`` or working directory
    is seen before it trains)."""
    explicit = os.environ.get("SYNAPSES_ROOT")
    if explicit:
        root = Path(explicit).expanduser().resolve()
        checkout = (root / "configs").is_dir()
        return root, "from $SYNAPSES_ROOT" + ("" if checkout else ", which holds no configs/: not a checkout")
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "configs").is_dir() and (folder / "data" / "mnist").is_dir():
            return folder, "the checkout at or above the working directory"
    return here, "the working directory: no checkout (configs/ and data/mnist/) at or above it; set SYNAPSES_ROOT"


def study_root() -> Path:
    """The checkout the study works in (see the module's docstring)."""
    return find_study_root()[0]


REPO_ROOT, ROOT_FOUND = find_study_root()
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
