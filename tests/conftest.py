"""Shared fixtures: MNIST loaded once, and a small slice of it for fast training tests."""

from __future__ import annotations

# ruff: noqa: E402 (torch must not compute before pin() sets the rounding)
from synapses_study.rounding import pin

pin()  # the tests train as the study's commands do: rounding pinned (synapses_study.rounding)

import pytest
import torch

from synapses_study.data import MNISTTensors, load_mnist


@pytest.fixture(scope="session")
def mnist() -> MNISTTensors:
    return load_mnist()


@pytest.fixture(scope="session")
def small_mnist(mnist: MNISTTensors) -> MNISTTensors:
    """2,000 training and 500 test images: real data, a fraction of a second per epoch."""
    return MNISTTensors(mnist.train_x[:2000], mnist.train_y[:2000], mnist.test_x[:500], mnist.test_y[:500])


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
