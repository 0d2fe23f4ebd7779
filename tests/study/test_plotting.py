"""Plotting helpers that compute what they draw."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from synapses_study.figures.plotting import dose_response


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
    from synapses_study.figures.plotting import band

    runs = pd.DataFrame(
        {"epoch": [1, 2, 1, 2, 1, 2], "seed": [0, 0, 1, 1, 2, 2], "wd": 0.0, "y": [1.0, 2.0, 3.0, 4.0, 2.0, 6.0]}
    )
    fig, ax = plt.subplots()
    band(ax, runs, "y", by="wd", spread="range")
    assert list(ax.lines[0].get_ydata()) == [2.0, 4.0]
    low, high = (
        ax.collections[0].get_paths()[0].vertices[:, 1].min(),
        ax.collections[0].get_paths()[0].vertices[:, 1].max(),
    )
    assert (low, high) == (1.0, 6.0)
    assert ax.get_legend_handles_labels()[1] == ["wd: 0"]
    with pytest.raises(ValueError, match="spread must be"):
        band(ax, runs, "y", by="wd", spread="iqr")
    plt.close(fig)


def test_groups_get_human_labels_and_one_colour_per_condition():
    from synapses_study.figures.plotting import CONFIG_COLOURS, axis_label, group_colours, group_label

    assert axis_label("test_acc") == "test accuracy (%)" and axis_label("ink_rho") == "ink ρ (Spearman)"
    assert (
        group_label("weight_decay", 0.001) == "L2 1e-3"
        and group_label("entry", "inverted") == "inverted"
        and group_label("inputs", "scaled") == "inputs: scaled"
    )
    # a decay has the same colour whatever else is in the figure
    for values in ([0.0, 0.001], [0.001, 0.01], [0.0, 0.001, 0.01]):
        colours = group_colours("weight_decay", values)
        assert all(colours[v] == CONFIG_COLOURS[group_label("weight_decay", v)] for v in values)
    other = group_colours("entry", ["inverted", "positive", "random", "set"])
    assert len(set(other.values())) == 4 and not set(other.values()) & {
        CONFIG_COLOURS["no decay"],
        CONFIG_COLOURS["L2 1e-3"],
        CONFIG_COLOURS["L2 1e-2"],
    }


def test_accuracy_is_drawn_in_percent_and_zoomed_past_the_first_epochs():
    import matplotlib.pyplot as plt

    from synapses_study.figures.plotting import metric_panel

    epochs = np.arange(1, 101)
    runs = pd.DataFrame(
        {
            "epoch": np.tile(epochs, 2),
            "seed": np.repeat([0, 1], 100),
            "weight_decay": 0.0,
            "test_acc": np.tile(np.r_[0.5, np.full(99, 0.97)], 2),
            "center_ratio": 1.0,
            "ink_rho": 0.0,
            "test_loss": 0.1,
        }
    )
    fig, axes = plt.subplots(4, 1)
    metric_panel(axes, runs, by="weight_decay")
    assert axes[3].get_ylabel() == "test accuracy (%)" and axes[3].lines[0].get_ydata()[-1] == 97.0
    assert axes[3].get_ylim()[0] > 90  # epoch 1's 50% would flatten everything after it
    plt.close(fig)


def test_save_figure_refuses_a_figure_hard_to_read(tmp_path):
    import matplotlib.pyplot as plt

    from synapses_study.figures.plotting import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ax.set_ylabel("center_ratio")
    with pytest.raises(ValueError, match="raw name 'center_ratio'"):
        save_figure(fig, "x", tmp_path)
    assert not (tmp_path / "x.png").exists()
    ax.set_ylabel("centre ratio")
    assert save_figure(fig, "x", tmp_path).exists()
    plt.close(fig)


def test_text_size_is_judged_at_the_width_the_write_up_shows():
    from synapses_study.figures.plotting import SHOWN_WIDTH_PX, require_text_size, shown_scale, small_text

    narrow, ax = plt.subplots(figsize=(4, 3))
    ax.set_xlabel("epoch", fontsize=8)
    assert shown_scale(narrow) == 1.0  # 4 inches at 110 dpi fit in the page
    assert small_text(narrow, 7) == []
    wide, ax = plt.subplots(figsize=(16, 3))
    ax.set_xlabel("epoch", fontsize=8)
    scale = shown_scale(wide)
    assert scale == pytest.approx(SHOWN_WIDTH_PX / ((wide.get_tightbbox().width + 0.2) * 110))
    assert scale < 0.6 and any(t.startswith("'epoch'") for t in small_text(wide, 7))
    with pytest.raises(ValueError, match="under 7 pt"):
        require_text_size(wide, 7)
    plt.close("all")


def test_ink_band_colours_are_four_distinct_hues():
    # never is grey (no ink); the three inked bands differ in hue by more than 0.15 of the
    # colour circle each (the old ramp of one brown: all within 0.02); lightness falls in band order
    from matplotlib.colors import rgb_to_hsv, to_rgb

    from synapses_study.figures.plotting import BAND_COLOURS, CONFIG_COLOURS

    hsv = {name: rgb_to_hsv(to_rgb(c)) for name, c in BAND_COLOURS.items()}
    assert hsv["never"][1] < 0.05
    inked = [hsv[name][0] for name in ("rare", "medium", "core")]
    gaps = [abs(a - b) for i, a in enumerate(inked) for b in inked[i + 1 :]]
    assert min(min(g, 1 - g) for g in gaps) > 0.15
    lightness = [np.mean(to_rgb(BAND_COLOURS[name])) for name in ("never", "rare", "medium", "core")]
    assert lightness == sorted(lightness, reverse=True)
    assert not set(BAND_COLOURS.values()) & set(CONFIG_COLOURS.values())
