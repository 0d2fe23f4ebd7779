"""Where the study's files live in the repository (one place, so modules agree)."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
RESULTS = REPO_ROOT / "results"
CONFIGS = REPO_ROOT / "configs"
FIGURES = REPO_ROOT / "figures"
MNIST_DIR = REPO_ROOT / "data" / "mnist"
CACHE = REPO_ROOT / ".cache"
NOTEBOOKS = REPO_ROOT / "notebooks"
# smoke-profile notebook runs: their executed copies, figures and tiny runs, never in figures/ or results/
SMOKE_OUTPUT = NOTEBOOKS / "executed" / "smoke"
