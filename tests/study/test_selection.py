"""The topology as feature selection: rankings and the classifiers on the chosen pixels."""

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from synapses_study.reading.selection import (  # noqa: E402
    baseline_scores,
    random_scores,
    selection_accuracy,
    top_pixels,
    unit_pixels,
    weight_scores,
)


def test_top_pixels_takes_the_highest_and_breaks_ties_reproducibly():
    scores = np.array([5, 1, 5, 3, 5, 0])
    chosen = top_pixels(scores, 2, rng_seed=0)
    assert set(chosen) <= {0, 2, 4} and len(chosen) == 2
    assert np.array_equal(chosen, top_pixels(scores, 2, rng_seed=0))
    assert np.array_equal(top_pixels(scores, 4), [0, 2, 3, 4])
    with pytest.raises(ValueError, match="k must be in"):
        top_pixels(scores, 0)


def test_baselines_and_weight_scores(small_mnist):
    ink = baseline_scores("ink", small_mnist.train_x)
    assert ink.shape == (784,) and ink[0] == 0 and ink.max() <= 1  # a corner pixel is never inked
    variance = baseline_scores("variance", small_mnist.train_x)
    assert variance[0] == 0 and variance.argmax() == unit_pixels(small_mnist.train_x).var(0).argmax()
    state = {
        "set_layers.0.connections": torch.tensor([[3, 0], [3, 1], [7, 0]]),
        "set_layers.0.weight": torch.tensor([0.5, -2.0, 1.0]),
    }
    scores = weight_scores(state)
    assert scores[3] == 2.5 and scores[7] == 1.0 and scores.sum() == 3.5
    assert not np.array_equal(random_scores(0), random_scores(1))


def test_informative_pixels_beat_random_ones(small_mnist):
    ink = top_pixels(baseline_scores("ink", small_mnist.train_x), 50)
    blank = top_pixels(-baseline_scores("ink", small_mnist.train_x), 50)  # the least inked
    for classifier in ("extra_trees", "linear_svm"):
        good, bad = (selection_accuracy(p, small_mnist, classifier) for p in (ink, blank))
        assert good > 0.5 and bad < 0.2, (classifier, good, bad)  # blank pixels: chance (10%)


def test_score_table_has_a_row_per_choice_and_resumes(tmp_path, monkeypatch, small_mnist):
    import pandas as pd

    from synapses_study.reading import selection

    calls = []
    monkeypatch.setattr(
        selection,
        "rankings",
        lambda configs, results_dir, rank_epochs: [
            ("ink", float("nan"), -1, lambda: np.arange(784.0)),
            ("random", float("nan"), 0, lambda: -np.arange(784.0)),
        ],
    )
    monkeypatch.setattr(
        selection,
        "selection_accuracy",
        lambda pixels, data, classifier: calls.append((len(pixels), classifier)) or float(pixels[0]) / 1000,
    )
    out = tmp_path / "selection.csv"
    table = selection.score_table(out, small_mnist, [], progress=False)
    assert len(table) == 2 * len(selection.BUDGETS) * len(selection.CLASSIFIERS) == len(calls)
    top_by_ink = table[(table.ranking == "ink") & (table.k == 50)]
    assert (top_by_ink.test_acc == (784 - 50) / 1000).all()  # the 50 highest scores: pixels 734-783
    pd.read_csv(out).iloc[:5].to_csv(out, index=False)  # as if interrupted after five rows
    calls.clear()
    again = selection.score_table(out, small_mnist, [], progress=False)
    assert len(calls) == 3 and again.drop(columns="test_acc").equals(table.drop(columns="test_acc"))


def test_rankings_read_the_topology_and_network_of_each_run(tmp_path, small_mnist):
    from synapses_study.reading import selection
    from synapses_study.runs.run_dir import RunDir
    from synapses_study.setup.config import ExperimentConfig
    from synapses_study.training.engine import run_experiment

    config = ExperimentConfig(epochs=2, train_size=500, test_size=100)
    run_dir = run_experiment(config, tmp_path, data=small_mnist, progress=False)
    items = selection.rankings([config], tmp_path, rank_epochs=(1, 2))
    names = [name for name, *_ in items]
    assert names == ["connections@1", "connections@2", "weights@2", "ink", "variance", "random", "random", "random"]
    scores = {name: fn() for name, _, _, fn in items[:3]}
    assert np.array_equal(scores["connections@2"], RunDir(run_dir).topology()[2])
    assert np.allclose(scores["weights@2"], selection.weight_scores(RunDir(run_dir).model_state()))
