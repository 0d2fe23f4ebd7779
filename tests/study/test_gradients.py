"""The gradient record (``record_gradients``): per pixel and epoch, the squared first-layer
gradients, equal to a hand-made sum, zero where a pixel carries no input, resumable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from synapses import SETLayer
from synapses_study.runs.instruments import GradientRecorder
from synapses_study.runs.run_dir import RunDir
from synapses_study.runs.run_files import DamagedFileError
from synapses_study.setup.config import ConfigError, ExperimentConfig
from synapses_study.training.engine import run_experiment


def test_the_recorder_sums_squared_gradients_per_input_pixel():
    torch.manual_seed(0)
    layer = SETLayer(12, 5, epsilon=2, compute="sparse").double()
    recorder = GradientRecorder(layer)
    expected = torch.zeros(12, dtype=torch.float64)
    for _ in range(3):  # three batches, as in one epoch
        x = torch.randn(4, 12, dtype=torch.float64)
        layer.zero_grad()
        (layer(x) ** 2).sum().backward()
        expected.index_add_(0, layer.connections[:, 0], layer.weight.grad**2)
    np.testing.assert_allclose(recorder.take(), expected.numpy().astype(np.float32), rtol=1e-6)
    assert not recorder.take().any()  # take() starts a new epoch
    recorder.close()
    layer(torch.randn(2, 12, dtype=torch.float64)).sum().backward()
    assert not recorder.take().any()  # closed: nothing recorded


def test_a_run_records_gradients_and_blank_pixels_get_none(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=2, inputs="scaled", record_gradients=True)
    assert "_grad_" in config.run_id()
    run = RunDir(run_experiment(config, tmp_path, data=small_mnist, progress=False))
    squared = run.gradients()
    assert squared.shape == (2, 784) and squared.dtype == np.float32
    blank = (small_mnist.train_x == small_mnist.train_x.min()).all(0).numpy()
    assert blank.any() and (squared[:, blank] == 0).all()  # scaled inputs: a blank pixel's input is 0
    assert (squared[:, ~blank].sum(1) > 0).all()
    assert run.gradients_file.name in run.manifest_file.read_text()


def test_an_interrupted_run_resumes_to_the_same_gradient_record(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=3, record_gradients=True, record_pruning=True)
    straight = run_experiment(config, tmp_path / "straight", data=small_mnist, progress=False)
    run_experiment(config, tmp_path / "resumed", data=small_mnist, progress=False, stop_after=1)
    resumed = run_experiment(config, tmp_path / "resumed", data=small_mnist, progress=False)
    for file in ("gradients.npz", "topology.npz", "pruning.npz", "model.pt"):
        assert (straight / file).read_bytes() == (resumed / file).read_bytes(), file
    a, b = (pd.read_csv(d / "metrics.csv.xz").drop(columns="seconds") for d in (straight, resumed))
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_a_damaged_gradient_record_is_named(tmp_path, small_mnist):
    run = RunDir(
        run_experiment(ExperimentConfig(epochs=1, record_gradients=True), tmp_path, data=small_mnist, progress=False)
    )
    run.gradients_file.write_bytes(run.gradients_file.read_bytes()[:100])
    with pytest.raises(DamagedFileError, match="gradients.npz"):
        run.gradients()


def test_a_dense_model_has_no_gradient_record_to_keep():
    with pytest.raises(ConfigError, match="record_gradients"):
        ExperimentConfig(model="Dense", evolution="off", record_gradients=True)
