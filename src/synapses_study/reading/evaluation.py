"""A finished run's final network rebuilt from its folder and scored on its test images."""

from __future__ import annotations

from pathlib import Path

import torch

from ..measures.analysis import loss_breakdown
from ..runs.run_dir import RunDir
from ..setup.data import prepare_data
from ..training.build import load_trained_model
from .results import mnist


def errors_summary(run_dir: Path) -> dict[str, float]:
    """:func:`synapses_study.measures.analysis.loss_breakdown` of a finished run's final network on its
    test images."""
    config = RunDir(run_dir).config()
    data = prepare_data(mnist(), config.train_size, config.test_size, config.inputs)
    with torch.no_grad():
        log_probs = load_trained_model(run_dir)(data.test_x)
    return loss_breakdown(log_probs, data.test_y)
