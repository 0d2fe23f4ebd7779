"""The code and the notebooks pass ruff (pyflakes, import order, bugbear, pyupgrade) and mypy; CI installs both."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is in the dev extra")
    result = subprocess.run(
        [ruff, "check", "src", "tests", "examples", "notebooks"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_formatted():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is in the dev extra")
    result = subprocess.run(
        [ruff, "format", "--check", "src", "tests", "examples", "notebooks"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr + "\n(make format formats it)"


def test_mypy_is_clean():
    if shutil.which("mypy", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mypy is in the dev extra")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "src"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
