"""The topology explorer: widget values drive what is drawn (no browser needed here)."""

import shutil

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

from synapses_study.figures.explorer import MEAN, Selection, SweepRuns, TopologyExplorer  # noqa: E402
from synapses_study.measures.topology import as_image  # noqa: E402
from synapses_study.reading.results import select_runs
from synapses_study.runs.run_dir import RunDir  # noqa: E402


@pytest.fixture(scope="module")
def explorer():
    return TopologyExplorer("reproduction")


def test_the_heatmap_shows_the_slider_epochs_counts(explorer):
    explorer.config_a.value = "weight_decay=0.001"
    explorer.seed_a.value = 1
    explorer.view.value = "counts"
    explorer.epoch.value = 400
    expected = RunDir.of(select_runs("reproduction", weight_decay=1e-3, seed=1)[0]).topology()[400]
    assert np.array_equal(explorer.figure.shown()["A"], as_image(expected))
    assert explorer.image.value[:8] == b"\x89PNG\r\n\x1a\n" and explorer.message.value == ""
    explorer.epoch.value = 0
    assert not np.array_equal(explorer.figure.shown()["A"], as_image(expected))


def test_mean_over_seeds_and_difference_from_uniform(explorer):
    explorer.config_a.value = "weight_decay=0.0"
    explorer.seed_a.value = MEAN
    explorer.view.value = "difference from uniform"
    explorer.epoch.value = 1000
    mean = np.mean([RunDir.of(c).topology()[1000] for c in select_runs("reproduction", weight_decay=0.0)], axis=0)
    np.testing.assert_allclose(explorer.figure.shown()["A"], as_image(mean - mean.mean()))
    assert explorer.epoch.max == 1000 and explorer.play.max == 1000


def test_compare_mode_shows_a_b_and_their_difference(explorer):
    explorer.view.value = "counts"
    explorer.config_a.value, explorer.config_b.value = "weight_decay=0.0", "weight_decay=0.001"
    explorer.compare.value = True
    explorer.epoch.value = 400
    shown = explorer.figure.shown()
    assert set(shown) == {"A", "B", "A − B"}
    a, b = (
        np.mean([RunDir.of(c).topology()[400] for c in select_runs("reproduction", weight_decay=wd)], axis=0)
        for wd in (0.0, 1e-3)
    )
    np.testing.assert_allclose(shown["A"], as_image(a))
    np.testing.assert_allclose(shown["B"], as_image(b))
    np.testing.assert_allclose(shown["A − B"], as_image(a - b))
    explorer.compare.value = False


def test_every_committed_sweep_opens(explorer):
    for sweep in explorer.sweep.options:
        explorer.sweep.value = sweep
        assert explorer.config_a.options, sweep
    explorer.sweep.value = "reproduction"


def test_a_missing_run_is_a_message_not_a_traceback(tmp_path):
    # a results folder holding one of the three seeds: the others are reported as missing
    config = select_runs("reproduction", weight_decay=0.0, seed=0)[0]
    shutil.copytree(RunDir.of(config).path, tmp_path / config.run_id())
    explorer = TopologyExplorer("reproduction", results_dir=tmp_path)
    explorer.config_a.value = "weight_decay=0.0"
    # only the finished seed is offered, and the mean says over how many seeds it is
    assert explorer.seed_a.options == (("mean over 1 seeds", MEAN), ("seed 0", 0))
    assert explorer.figure is not None and explorer.message.value == ""
    explorer.config_a.value = "weight_decay=0.01"
    assert (
        "no finished run of any seed" in explorer.message.value
        and "python -m synapses_study.training.sweep configs/reproduction.yaml" in explorer.message.value
    )
    assert explorer.figure is None and explorer.image.layout.display == "none"
    assert (
        SweepRuns("reproduction", tmp_path)
        .problem(Selection("weight_decay=0.01"))
        .startswith("reproduction / weight_decay=0.01: no finished run of any seed")
    )


def test_animation_frames_follow_the_epochs(tmp_path):
    from PIL import Image

    from synapses_study.figures.animate import animate

    rng = np.random.default_rng(0)
    counts = {"a": rng.integers(0, 30, (21, 784)).astype(float), "b": rng.integers(0, 30, (21, 784)).astype(float)}
    path = animate(counts, tmp_path / "t.gif", every=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 3  # epochs 0, 10, 20
        first = np.asarray(gif.convert("RGB"))
        gif.seek(2)
        assert not np.array_equal(first, np.asarray(gif.convert("RGB")))


def test_the_command_line_prints_help_and_times_nothing_unless_asked(capsys, monkeypatch):
    from synapses_study.figures import explorer

    monkeypatch.setattr(explorer, "slider_redraw_ms", lambda **kwargs: (_ for _ in ()).throw(AssertionError("timed")))
    with pytest.raises(SystemExit) as info:
        explorer.main(["--help"])
    assert info.value.code == 0 and "runs in JupyterLab" in capsys.readouterr().out
    assert explorer.main([]) == 0 and "--time-redraw" in capsys.readouterr().out


def test_compare_mode_never_picks_a_baseline_without_topology():
    # set_mlp holds the SET nets and their dense baseline: B defaults to a SET net
    explorer = TopologyExplorer("set_mlp")
    assert explorer.runs.has_topology(explorer.config_a.value) and explorer.runs.has_topology(explorer.config_b.value)
    assert any(not explorer.runs.has_topology(label) for label in explorer.runs.labels)
    explorer.compare.value = True
    assert explorer.figure is not None and "mean over 3 seeds" in explorer.figure.figure.axes[0].get_title()
    # and it is not even offered: its ~1,000 connections per pixel would swamp the colour scale
    assert all(explorer.runs.has_topology(label) for label in explorer.config_b.options)


@pytest.mark.parametrize("sweep", ["set_mlp", "evolnet_triplet", "reproduction"])
def test_compare_mode_reads_at_a_glance(sweep):
    """No overlapping titles, no title over another plot, no raw column name on an axis, no
    legend over the data or under 6 pt (bounding boxes of the drawn figure), and the A and B
    heatmaps on one colour scale that spans their counts."""
    from synapses_study.figures.plotting import legibility_problems

    explorer = TopologyExplorer(sweep)
    explorer.compare.value = True
    figure = explorer.figure
    assert legibility_problems(figure.figure) == []
    figure.set_epoch(figure.last_epoch)
    low, high = figure.images["A"].get_clim()
    assert (
        low == 0 and high == max(float(c.max()) for c in figure.counts.values()) < 200
    )  # sparse counts, no dense baseline
    assert figure.images["B"].get_clim() == (low, high)


def test_a_figure_with_overlapping_titles_is_reported():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synapses_study.figures.plotting import legibility_problems

    fig, axes = plt.subplots(1, 2, figsize=(4, 2))
    axes[0].set_title("a long title that runs into the next plot's title " * 2)
    axes[1].set_title("the next plot's title")
    axes[0].plot([0, 1], [0, 1], label="data")
    axes[0].legend(loc="center")
    axes[1].set_ylabel("ink_rho")
    problems = legibility_problems(fig)
    assert (
        any("overlap" in p for p in problems)
        and any("legend over the data" in p for p in problems)
        and any("raw name 'ink_rho'" in p for p in problems)
    )
    plt.close(fig)
