"""How the first layer's connections spread over the input image.

``counts``: connections per input pixel, ``(784,)`` or ``(28, 28)``.
``trend``: mean count over centred squares of side 2, 4, ..., 28 (the original study's
curve; falling = denser centre = positive topology learning).
``center_ratio``: mean count over the central 14 x 14 pixels (rows and columns 7..20)
over the mean count over all pixels; above 1 is positive topology learning.
"""

from __future__ import annotations

import numpy as np
import torch

SIDE = 28
CENTER = slice(7, 21)


def pixel_counts(connections: torch.Tensor, n_inputs: int = SIDE * SIDE) -> np.ndarray:
    """Connections per input index, ``(n_inputs,)`` int64, zeros included.

    ``connections``: ``(n, 2)``, column 0 the input index (a SETLayer's buffer).
    """
    return torch.bincount(connections[:, 0].cpu(), minlength=n_inputs).numpy()


def as_image(counts: np.ndarray) -> np.ndarray:
    """``(..., 784)`` -> ``(..., 28, 28)``."""
    counts = np.asarray(counts)
    return counts.reshape(*counts.shape[:-1], SIDE, SIDE) if counts.shape[-1] == SIDE * SIDE else counts


def trend(counts: np.ndarray) -> np.ndarray:
    """``(..., 784)`` or ``(..., 28, 28)`` counts -> ``(..., 14)`` centred-square means.

    ``v[i] = mean(t[13 - i : 15 + i, 13 - i : 15 + i])`` for ``i = 0 .. 13``.
    """
    image = as_image(counts).astype(np.float64)
    half = SIDE // 2
    return np.stack(
        [image[..., half - 1 - i : half + 1 + i, half - 1 - i : half + 1 + i].mean(axis=(-2, -1)) for i in range(half)],
        axis=-1,
    )


def center_ratio(counts: np.ndarray) -> np.ndarray | float:
    """Mean count in the central 14 x 14 over the mean count over all pixels."""
    image = as_image(counts).astype(np.float64)
    ratio = image[..., CENTER, CENTER].mean(axis=(-2, -1)) / image.mean(axis=(-2, -1))
    return float(ratio) if np.ndim(ratio) == 0 else ratio
