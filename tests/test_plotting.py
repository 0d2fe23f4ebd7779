"""Plotting helpers that compute what they draw."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from synapses.study.plotting import dose_response


def test_dose_response_draws_means_with_zero_on_a_log_axis():
    last = pd.DataFrame({"weight_decay": [0.0, 0.0, 1e-3, 1e-3, 1e-2], "ink_rho": [-0.1, 0.1, 0.3, 0.5, 0.4]})
    fig, ax = plt.subplots()
    dose_response(ax, last, "ink_rho")
    line = ax.lines[0]
    assert list(line.get_xdata()) == [1e-4, 1e-3, 1e-2]  # 0 drawn a decade left of 1e-3
    assert list(line.get_ydata()) == pytest.approx([0.0, 0.4, 0.4])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.001", "0.01"]
    plt.close(fig)


def test_band_draws_the_mean_and_the_chosen_spread():
    from synapses.study.plotting import band

    runs = pd.DataFrame({"epoch": [1, 2, 1, 2, 1, 2], "seed": [0, 0, 1, 1, 2, 2], "wd": 0.0, "y": [1.0, 2.0, 3.0, 4.0, 2.0, 6.0]})
    fig, ax = plt.subplots()
    band(ax, runs, "y", by="wd", spread="range")
    assert list(ax.lines[0].get_ydata()) == [2.0, 4.0]
    low, high = ax.collections[0].get_paths()[0].vertices[:, 1].min(), ax.collections[0].get_paths()[0].vertices[:, 1].max()
    assert (low, high) == (1.0, 6.0)
    assert ax.get_legend_handles_labels()[1] == ["wd = 0"]
    with pytest.raises(ValueError, match="spread must be"):
        band(ax, runs, "y", by="wd", spread="iqr")
    plt.close(fig)
