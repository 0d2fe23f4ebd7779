"""A finished run's final network rebuilt from its folder and scored on its test images."""

from __future__ import annotations

from pathlib import Path

import torch

from .analysis import loss_breakdown
from .build import load_trained_model
from .data import prepare_data
from .results import mnist
from .run_dir import RunDir


def errors_summary(run_dir: Path) -> dict[str, float]:
    """:func:`synapses_study.analysis.loss_breakdown` of a finished run's final network on its
    test images."""
    config = RunDir(run_dir).config()
    data = prepare_data(mnist(), config.train_size, config.test_size, config.inputs)
    with torch.no_grad():
        log_probs = load_trained_model(run_dir)(data.test_x)
    return loss_breakdown(log_probs, data.test_y)
