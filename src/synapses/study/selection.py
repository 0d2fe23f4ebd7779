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

from typing import Literal

import numpy as np
import torch

from .analysis import abs_weight_sum
from .data import MEAN, STD, MNISTTensors

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


def selection_accuracy(pixels: np.ndarray, data: MNISTTensors, classifier: Classifier = "extra_trees", seed: int = 0) -> float:
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
