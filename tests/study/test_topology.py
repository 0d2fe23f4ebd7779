import numpy as np
import pytest
import torch

from synapses_study.measures.topology import as_image, center_ratio, pixel_counts, trend


def test_pixel_counts_keep_pixels_without_connections():
    # the original's np.unique(return_counts=True) dropped pixels with no connection
    connections = torch.tensor([[0, 0], [0, 1], [783, 2], [5, 0]])
    counts = pixel_counts(connections)
    assert counts.shape == (784,)
    assert counts[0] == 2 and counts[5] == 1 and counts[783] == 1
    assert counts.sum() == 4 and (counts == 0).sum() == 781


def test_trend_is_the_mean_over_centred_squares():
    image = np.arange(784, dtype=float).reshape(28, 28)
    v = trend(image.reshape(784))
    assert v.shape == (14,)
    assert v[0] == image[13:15, 13:15].mean()
    assert v[6] == image[7:21, 7:21].mean()
    assert v[13] == image.mean()


def test_trend_of_a_history_keeps_the_leading_axes():
    history = np.random.default_rng(0).integers(0, 30, size=(5, 784))
    assert trend(history).shape == (5, 14)
    assert np.allclose(trend(history)[3], trend(history[3]))


def test_center_ratio():
    uniform = np.full(784, 7)
    assert center_ratio(uniform) == pytest.approx(1.0)
    centre_only = np.zeros((28, 28))
    centre_only[7:21, 7:21] = 1
    assert center_ratio(centre_only.reshape(784)) == pytest.approx(784 / 196)
    margin_only = 1 - centre_only
    assert center_ratio(margin_only) == 0.0
    assert center_ratio(np.stack([uniform, centre_only.reshape(784)])).tolist() == pytest.approx([1.0, 4.0])


def test_as_image():
    assert as_image(np.zeros((3, 784))).shape == (3, 28, 28)
