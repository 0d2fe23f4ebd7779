import numpy as np
import pytest
import torch

from synapses_study.measures.analysis import ink_correlation, ink_frequency, mean_abs_weight, region_summary


def test_ink_frequency_counts_non_blank_images_per_pixel():
    images = torch.full((4, 784), -0.5)
    images[:, 0] = 1.0  # always inked
    images[:2, 1] = 0.3  # half the time
    ink = ink_frequency(images)
    assert ink[0] == 1.0 and ink[1] == 0.5 and (ink[2:] == 0).all()


def test_mean_abs_weight_per_input_with_nan_for_unconnected():
    connections = torch.tensor([[0, 0], [0, 1], [2, 0]])
    weight = torch.tensor([-1.0, 3.0, 0.5])
    m = mean_abs_weight(connections, weight, n_inputs=4)
    assert m[0] == 2.0 and m[2] == 0.5 and np.isnan(m[1]) and np.isnan(m[3])


def test_ink_correlation_is_a_rank_correlation():
    ink = np.linspace(0, 1, 784)
    assert ink_correlation(ink * 10 + 3, ink) == pytest.approx(1.0)
    assert ink_correlation(-np.exp(ink), ink) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    history = np.stack([ink, -ink, rng.permutation(ink)])
    rho = ink_correlation(history, ink)
    assert rho[:2] == pytest.approx([1.0, -1.0]) and abs(rho[2]) < 0.1


def test_ink_correlation_of_equal_counts_is_nan_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(ink_correlation(np.full(784, 128.0), np.linspace(0, 1, 784)))


def test_ink_correlation_handles_ties_like_spearman():
    counts = np.array([1, 1, 2, 3] * 196, dtype=float)
    ink = np.array([0.0, 0.0, 0.5, 0.9] * 196)
    assert ink_correlation(counts, ink) == pytest.approx(1.0)


def test_region_summary():
    ink = np.zeros(784)
    ink[:100] = 0.5
    connections = torch.tensor([[0, 0], [1, 0], [500, 0]])
    weight = torch.tensor([0.2, -0.4, 0.1])
    table = region_summary(connections, weight, ink)
    assert table.loc["inked", "pixels"] == 100 and table.loc["blank", "pixels"] == 684
    assert table.loc["inked", "mean_abs_weight"] == pytest.approx(0.3)
    assert table.loc["blank", "connections_per_pixel"] == pytest.approx(1 / 684)


def test_pruning_by_region():
    from synapses_study.measures.analysis import pruning_by_region

    ink = np.zeros(784)
    ink[:392] = 0.5  # half the pixels inked
    counts = np.full((3, 784), 2)  # init + two epochs, two connections per pixel
    pruned = np.zeros((2, 784), dtype=int)
    pruned[0, 392:] = 1  # epoch 1: one connection pruned from every blank pixel
    pruned[1, :392] = 2  # epoch 2: both connections of every inked pixel
    mass = np.ones((2, 784))
    mass[:, :392] = 3.0
    table = pruning_by_region(pruned, mass, counts, ink).set_index(["epoch", "region"])
    assert table.loc[(1, "blank"), "share_of_pruned"] == 1.0 and table.loc[(1, "inked"), "share_of_pruned"] == 0.0
    assert table.loc[(1, "blank"), "pruned_fraction"] == 0.5
    assert table.loc[(2, "inked"), "pruned_fraction"] == 1.0
    assert table.loc[(2, "inked"), "mean_abs_weight"] == 1.5 and table.loc[(2, "blank"), "mean_abs_weight"] == 0.5
    assert table.loc[(1, "blank"), "share_of_connections"] == 0.5


def test_loss_breakdown_splits_the_nll_between_right_and_wrong():
    import math

    from synapses_study.measures.analysis import loss_breakdown

    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    targets = torch.tensor([0, 1, 1, 2])  # the third is wrong: 0.6 on class 0, 0.3 on the truth
    out = loss_breakdown(probs.log(), targets)
    nll = [-math.log(p) for p in (0.7, 0.8, 0.3, 0.6)]
    assert out["loss"] == pytest.approx(sum(nll) / 4)
    assert out["errors"] == 0.25
    assert out["error_share"] == pytest.approx(nll[2] / sum(nll))
    assert out["nll_wrong"] == pytest.approx(nll[2]) and out["nll_right"] == pytest.approx(
        (nll[0] + nll[1] + nll[3]) / 3
    )
    assert out["confidence_wrong"] == pytest.approx(0.6)
    perfect = loss_breakdown(probs.log()[:2], targets[:2])
    assert perfect["errors"] == 0.0 and perfect["error_share"] == 0.0 and math.isnan(perfect["nll_wrong"])
