"""Shared fixtures: MNIST loaded once, a small slice of it for fast training tests, and one
fresh virtual environment with torch for the install tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# ruff: noqa: E402 (torch must not compute before pin() sets the rounding)
from synapses_study.training.rounding import pin

pin()  # the tests train as the study's commands do: rounding pinned (synapses_study.training.rounding)

import pytest
import torch

from synapses_study.setup.data import MNISTTensors, load_mnist


@pytest.fixture(scope="session")
def mnist() -> MNISTTensors:
    return load_mnist()


@pytest.fixture(scope="session")
def small_mnist(mnist: MNISTTensors) -> MNISTTensors:
    """2,000 training and 500 test images: real data, a fraction of a second per epoch."""
    return MNISTTensors(mnist.train_x[:2000], mnist.train_y[:2000], mnist.test_x[:500], mnist.test_y[:500])


@pytest.fixture(scope="session")
def torch_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh virtual environment holding torch 2.14.1 and nothing of ours:
    installed once for the session (two minutes); each install test removes or replaces what
    another put there before installing its own way, so their order does not matter."""
    venv = tmp_path_factory.mktemp("torch_venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # from this machine's disk; --no-compile: byte-compiling torch's sources was 40% of the install
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-compile", "torch==2.14.1"], check=True)
    return python


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that skips without CUDA as ``cuda``, so that ``pytest -m cuda``
    (``make gpu-check``) runs exactly those on a GPU machine."""
    for item in items:
        if any(mark.kwargs.get("reason") == "needs CUDA" for mark in item.iter_markers("skipif")):
            item.add_marker(pytest.mark.cuda)
