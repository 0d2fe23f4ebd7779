"""The learned topology as feature selection (the yardstick of QuickSelection and WAST):
rank the 784 pixels, keep the top K, and measure how well a classifier does on those
pixels alone.

Rankings: by the first layer's connections per pixel (at any recorded epoch), by the summed
``|weight|`` of those connections (from a saved network), and three baselines that need no
training: ink frequency, pixel variance and K random pixels. Classifiers: extremely
randomised trees with 50 trees (as QuickSelection) and a linear SVM (as WAST), from
scikit-learn, on pixels in [0, 1].
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..measures.analysis import abs_weight_sum
from ..runs.run_dir import RunDir
from ..runs.run_files import write_atomic
from ..setup.config import ExperimentConfig
from ..setup.data import MEAN, STD, MNISTTensors, load_mnist
from ..setup.paths import RESULTS
from .results import mnist, select_runs

Classifier = Literal["extra_trees", "linear_svm"]


def top_pixels(scores: np.ndarray, k: int, rng_seed: int = 0) -> np.ndarray:
    """The ``k`` pixels with the highest ``scores`` ``(784,)``, ties broken at random with
    ``rng_seed`` (connection counts tie often); sorted by pixel index."""
    scores = np.asarray(scores, dtype=float)
    if not 1 <= k <= len(scores):
        raise ValueError(f"k must be in [1, {len(scores)}], got {k}")
    jitter = np.random.default_rng(rng_seed).random(len(scores))
    order = np.lexsort((jitter, -scores))  # by score, then by the random tie-breaker
    return np.sort(order[:k])


def weight_scores(state: dict[str, torch.Tensor], n_inputs: int = 784) -> np.ndarray:
    """``(n_inputs,)`` summed ``|weight|`` of each input's first-layer connections, from a
    state dict of a sparse net (``set_layers.0.*``)."""
    return abs_weight_sum(state["set_layers.0.connections"], state["set_layers.0.weight"], n_inputs)


def baseline_scores(kind: Literal["ink", "variance"], images: torch.Tensor) -> np.ndarray:
    """``(784,)`` ink frequency (fraction of images where a pixel is not blank) or pixel
    variance over ``images`` ``(n, 784)`` (standardised, as :class:`MNISTTensors` holds them)."""
    pixels = unit_pixels(images)
    if kind == "ink":
        return (pixels > 0).double().mean(0).numpy()
    if kind == "variance":
        return pixels.double().var(0).numpy()
    raise ValueError(f"kind must be 'ink' or 'variance', got {kind!r}")


def random_scores(seed: int, n_inputs: int = 784) -> np.ndarray:
    return np.random.default_rng(seed).random(n_inputs)


def unit_pixels(images: torch.Tensor) -> torch.Tensor:
    """Standardised images back to [0, 1]."""
    return (images * STD + MEAN).clamp(0, 1)


def selection_accuracy(
    pixels: np.ndarray, data: MNISTTensors, classifier: Classifier = "extra_trees", seed: int = 0
) -> float:
    """Test accuracy of ``classifier`` trained on the training images' ``pixels`` only."""
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.svm import LinearSVC

    columns = torch.as_tensor(np.asarray(pixels), dtype=torch.long)
    train_x = unit_pixels(data.train_x).index_select(1, columns).numpy()
    test_x = unit_pixels(data.test_x).index_select(1, columns).numpy()
    if classifier == "extra_trees":
        model = ExtraTreesClassifier(n_estimators=50, n_jobs=1, random_state=seed)
    elif classifier == "linear_svm":
        model = LinearSVC(C=1.0, random_state=seed, max_iter=5000)
    else:
        raise ValueError(f"classifier must be 'extra_trees' or 'linear_svm', got {classifier!r}")
    model.fit(train_x, data.train_y.numpy())
    return float((model.predict(test_x) == data.test_y.numpy()).mean())


# ---------------------------------------------------------------------------- the study's table
# Fixed before any score was computed: the epochs of the 1000-epoch reproduction runs whose
# connection counts rank the pixels, the pixel budgets and the two classifiers of the field.
RANK_EPOCHS = (1, 10, 155, 1000)
BUDGETS = (50, 100)
CLASSIFIERS: tuple[Classifier, ...] = ("extra_trees", "linear_svm")
RANDOM_SEEDS = (0, 1, 2)
COLUMNS = ("ranking", "weight_decay", "seed", "k", "classifier", "test_acc")


def rankings(
    configs: list[ExperimentConfig], results_dir: Path | None = None, rank_epochs: tuple[int, ...] = RANK_EPOCHS
) -> list[tuple[str, float, int, Callable[[], np.ndarray]]]:
    """Every ranking of the table as ``(name, weight_decay, seed, scores)``, scores computed
    on demand: the first layer's connections per pixel after each of ``rank_epochs``, the
    summed ``|weight|`` of the final network, per run of ``configs`` (finished runs in
    ``results_dir``); then ink frequency, pixel variance (``weight_decay`` and ``seed`` NaN
    and -1) and random scores per seed."""
    root = results_dir if results_dir is not None else RESULTS
    items: list[tuple[str, float, int, Callable[[], np.ndarray]]] = []
    for config in configs:
        run_dir = root / config.run_id()
        for epoch in rank_epochs:
            items.append(
                (f"connections@{epoch}", config.weight_decay, config.seed, partial(_connections_after, run_dir, epoch))
            )
        items.append((f"weights@{config.epochs}", config.weight_decay, config.seed, partial(_final_weights, run_dir)))
    kinds: tuple[Literal["ink", "variance"], ...] = ("ink", "variance")
    for kind in kinds:
        items.append((kind, float("nan"), -1, partial(_training_baseline, kind)))
    for seed in RANDOM_SEEDS:
        items.append(("random", float("nan"), seed, partial(random_scores, seed)))
    return items


def _connections_after(run_dir: Path, epoch: int) -> np.ndarray:
    return RunDir(run_dir).topology()[epoch]


def _final_weights(run_dir: Path) -> np.ndarray:
    return weight_scores(RunDir(run_dir).model_state())


def _training_baseline(kind: Literal["ink", "variance"]) -> np.ndarray:
    return baseline_scores(kind, mnist().train_x)


def score_table(
    out: Path,
    data: MNISTTensors,
    configs: list[ExperimentConfig] | None = None,
    results_dir: Path | None = None,
    rank_epochs: tuple[int, ...] = RANK_EPOCHS,
    progress: bool = True,
) -> pd.DataFrame:
    """Test accuracy of each classifier on the top-K pixels of each ranking, one row per
    (ranking, weight decay, seed, K, classifier), appended to the CSV ``out`` as each is done
    (written atomically), so an interrupted table resumes where it stopped.

    ``configs``: the runs whose topologies rank the pixels (default: the 1000-epoch
    reproduction's), read from ``results_dir`` (default ``results/``); the classifiers train
    on ``data``'s training images and are scored on its test images."""
    configs = select_runs("reproduction") if configs is None else configs
    done = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=COLUMNS)
    keys = {_key(*row) for row in done[list(COLUMNS[:5])].itertuples(index=False)}
    rows = done.to_dict("records")
    todo = [
        (name, wd, seed, k, classifier, scores)
        for name, wd, seed, scores in rankings(configs, results_dir, rank_epochs)
        for k in BUDGETS
        for classifier in CLASSIFIERS
        if _key(name, wd, seed, k, classifier) not in keys
    ]
    cache: dict[int, np.ndarray] = {}
    for name, wd, seed, k, classifier, scores in tqdm(todo, desc="feature selection", disable=not progress):
        if id(scores) not in cache:  # each ranking's scores once, for all its budgets and classifiers
            cache[id(scores)] = scores()
        values = cache[id(scores)]
        accuracy = selection_accuracy(top_pixels(values, k), data, classifier)
        rows.append(dict(ranking=name, weight_decay=wd, seed=seed, k=k, classifier=classifier, test_acc=accuracy))
        write_atomic(out, pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False).encode())
    return pd.DataFrame(rows, columns=COLUMNS)


def missing_scores(
    table: pd.DataFrame, configs: list[ExperimentConfig] | None = None, rank_epochs: tuple[int, ...] = RANK_EPOCHS
) -> int:
    """How many rows of the full table (the rankings of ``configs``, default the
    reproduction's, after ``rank_epochs``, x budgets x classifiers) ``table`` lacks."""
    configs = select_runs("reproduction") if configs is None else configs
    present = {_key(*row) for row in table[list(COLUMNS[:5])].itertuples(index=False)}
    expected = {
        _key(name, wd, seed, k, c)
        for name, wd, seed, _ in rankings(configs, rank_epochs=rank_epochs)
        for k in BUDGETS
        for c in CLASSIFIERS
    }
    return len(expected - present)


def _key(ranking: str, weight_decay: float, seed: int, k: int, classifier: str) -> tuple:
    """A row's identity, the same whether it comes from the CSV or is about to be computed
    (NaN, the baselines' weight decay, read back from a CSV compares unequal to itself)."""
    return ranking, "" if weight_decay != weight_decay else f"{float(weight_decay):g}", int(seed), int(k), classifier


def main(argv: list[str] | None = None) -> int:
    """``python -m synapses_study.reading.selection [--out FILE]``: compute the feature-selection table."""
    parser = argparse.ArgumentParser(
        prog="python -m synapses_study.reading.selection",
        description="Feature selection by the learned topology: the table (resumable).",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "feature_selection.csv")
    parser.add_argument("--sweep", default="reproduction", help="the 1000-epoch runs whose topologies rank the pixels")
    args = parser.parse_args(argv)
    table = score_table(args.out, load_mnist(), select_runs(args.sweep))
    print(f"{len(table)} rows in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
