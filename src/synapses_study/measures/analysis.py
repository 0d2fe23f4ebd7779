"""Looking inside a trained first layer: which pixels carry ink, and what their weights do.

The study's conjecture is about informative versus blank pixels, which the centred-square
instruments (``trend``, ``center_ratio``) only approximate by geometry. These helpers
measure it directly:

* :func:`ink_frequency`: per pixel, the fraction of images in which it is not blank;
* :func:`mean_abs_weight`: per pixel, the mean magnitude of its outgoing connections;
* :func:`ink_correlation`: Spearman correlation between per-pixel connection counts and ink
  frequency (above 0: connections follow the ink, positive topology learning; no threshold);
* :func:`region_summary`: connections and weight magnitudes for blank and inked pixels;
* :func:`pruning_by_region`: per epoch, who gets pruned and how large the weights are, for
  blank and inked pixels (from a run recorded with ``record_pruning``);
* :func:`loss_breakdown`: how much of a test loss comes from the misclassified images, and
  how confident the net is about them (the overfitting puzzle).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

# A pixel is blank when it carries ink in fewer than 1% of the training images.
BLANK_BELOW = 0.01
# Per-epoch values move by about 0.02 from one epoch to the next, so a number quoted at a
# point in training is the mean of the TRAILING_WINDOW epochs ending there (chosen after a
# single-epoch reading was found to flip a comparison; the window was not tuned).
TRAILING_WINDOW = 20


def ink_frequency(images: torch.Tensor) -> np.ndarray:
    """``(n, 784)`` images -> ``(784,)`` fraction of images where each pixel is above the
    blank value (the minimum over the data set: 0 raw, -0.424 normalised)."""
    blank = images.min()
    return (images > blank).double().mean(0).numpy()


def abs_weight_sum(connections: torch.Tensor, weight: torch.Tensor, n_inputs: int = 784) -> np.ndarray:
    """``(n_inputs,)`` float64 sum of ``|weight|`` over each input's connections.

    ``connections``: ``(n, 2)`` (input, output); ``weight``: ``(n,)``.
    """
    magnitude = weight.detach().cpu().double().abs()
    return torch.zeros(n_inputs, dtype=torch.float64).index_add_(0, connections[:, 0].cpu(), magnitude).numpy()


def mean_abs_weight(connections: torch.Tensor, weight: torch.Tensor, n_inputs: int = 784) -> np.ndarray:
    """``(n_inputs,)`` mean ``|weight|`` of each input's connections (NaN for none)."""
    count = np.bincount(connections[:, 0].cpu().numpy(), minlength=n_inputs)
    with np.errstate(invalid="ignore"):
        return abs_weight_sum(connections, weight, n_inputs) / count  # 0/0: NaN, no connection


def ink_correlation(counts: np.ndarray, ink: np.ndarray) -> np.ndarray | float:
    """Spearman rank correlation of ``counts`` ``(..., 784)`` with ``ink`` ``(784,)``; NaN
    where the counts are all equal (a dense layer: no ranking to correlate)."""

    def ranks(values: np.ndarray) -> np.ndarray:
        return pd.DataFrame(np.atleast_2d(values).T).rank().to_numpy().T.copy()  # average ranks for ties

    r_counts, r_ink = ranks(np.asarray(counts, dtype=float)), ranks(ink)[0]
    r_counts -= r_counts.mean(axis=1, keepdims=True)
    r_ink = r_ink - r_ink.mean()
    with np.errstate(invalid="ignore"):  # 0/0 for constant counts: NaN
        rho = (r_counts @ r_ink) / (np.linalg.norm(r_counts, axis=1) * np.linalg.norm(r_ink))
    return float(rho[0]) if np.ndim(counts) == 1 else rho


def region_summary(
    connections: torch.Tensor, weight: torch.Tensor, ink: np.ndarray, blank_below: float = BLANK_BELOW
) -> pd.DataFrame:
    """Per region (``blank``: ink in fewer than ``blank_below`` of the images; ``inked``: the
    rest): pixels, connections per pixel, and mean ``|weight|`` per connection."""
    inputs = connections[:, 0].cpu().numpy()
    magnitude = weight.detach().cpu().double().abs().numpy()
    counts = np.bincount(inputs, minlength=len(ink))
    rows = []
    for name, pixels in (("blank", ink < blank_below), ("inked", ink >= blank_below)):
        mask = pixels[inputs]
        rows.append(
            dict(
                region=name,
                pixels=int(pixels.sum()),
                connections_per_pixel=counts[pixels].mean(),
                mean_abs_weight=magnitude[mask].mean() if mask.any() else np.nan,
            )
        )
    return pd.DataFrame(rows).set_index("region")


def pruning_by_region(
    pruned_counts: np.ndarray,
    abs_weight_sum: np.ndarray,
    pixel_counts: np.ndarray,
    ink: np.ndarray,
    blank_below: float = BLANK_BELOW,
) -> pd.DataFrame:
    """Per epoch, for blank and inked pixels: share of the connections, share of the pruned
    ones, fraction of the region's connections pruned, and mean ``|weight|`` before pruning.

    Args:
        pruned_counts: ``(epochs, 784)`` connections pruned after each epoch, per pixel.
        abs_weight_sum: ``(epochs, 784)`` summed ``|weight|`` per pixel before pruning.
        pixel_counts: ``(epochs + 1, 784)`` connections per pixel (row 0: initialisation).
        ink: ``(784,)`` ink frequency of each pixel.

    Returns:
        One row per (epoch, region), epochs numbered from 1.
    """
    counts = np.asarray(pixel_counts)[1:]  # the connections standing when each pruning happened
    rows = []
    for name, pixels in (("blank", ink < blank_below), ("inked", ink >= blank_below)):
        region_counts = counts[:, pixels].sum(axis=1)
        region_pruned = pruned_counts[:, pixels].sum(axis=1)
        rows.append(
            pd.DataFrame(
                {
                    "epoch": np.arange(1, len(counts) + 1),
                    "region": name,
                    "share_of_connections": region_counts / counts.sum(axis=1),
                    "share_of_pruned": region_pruned / np.maximum(pruned_counts.sum(axis=1), 1),
                    "pruned_fraction": region_pruned / np.maximum(region_counts, 1),
                    "mean_abs_weight": abs_weight_sum[:, pixels].sum(axis=1) / np.maximum(region_counts, 1),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


@torch.no_grad()
def loss_breakdown(log_probs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Split a negative log-likelihood between correctly and wrongly classified samples.

    Args:
        log_probs: ``(n, classes)`` log-probabilities (a network's output).
        targets: ``(n,)`` class indices.

    Returns:
        ``loss`` (mean NLL, what :func:`synapses_study.training.engine.evaluate` reports), ``errors`` (the
        fraction misclassified), ``error_share`` (the fraction of the summed NLL that the
        misclassified samples carry), ``nll_wrong`` and ``nll_right`` (mean NLL of each
        group; NaN for an empty one) and ``confidence_wrong`` (mean probability the net gives
        its wrong answer).
    """
    nll = -log_probs.gather(1, targets[:, None])[:, 0].double()
    wrong = log_probs.argmax(1) != targets
    confidence = log_probs.max(1).values.double().exp()
    nan = float("nan")
    return {
        "loss": float(nll.mean()),
        "errors": float(wrong.double().mean()),
        "error_share": float(nll[wrong].sum() / nll.sum()),
        "nll_wrong": float(nll[wrong].mean()) if wrong.any() else nan,
        "nll_right": float(nll[~wrong].mean()) if (~wrong).any() else nan,
        "confidence_wrong": float(confidence[wrong].mean()) if wrong.any() else nan,
    }


def settles_below_zero(values: np.ndarray, window: int = TRAILING_WINDOW) -> int | None:
    """The first index from which the trailing ``window`` mean of ``values`` (fewer at the
    start) stays below 0 to the end, or ``None`` if it ends at or above 0."""
    trailing = pd.Series(values).rolling(window, min_periods=1).mean().to_numpy()  # as excess_pruning's
    at_or_above = np.flatnonzero(trailing >= 0)
    if len(at_or_above) and at_or_above[-1] == len(values) - 1:
        return None
    return int(at_or_above[-1]) + 1 if len(at_or_above) else 0
