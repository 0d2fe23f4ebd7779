"""The topology the network actually keeps: survivors of each epoch's pruning, by ink band.

After epoch ``e`` the recorded topology (``topology.npz``) still holds the connections
that epoch's pruning removed: they are zeroed and move only at the start of epoch
``e + 1``. The *survivors* are the others, ``counts - pruned`` (a run recorded with
``record_pruning``), or, at the end of a finished run, the final network's connections
whose ``pruned`` flag is off. Every topology number of the mechanism is read on them.

Ink bands split the pixels by ink frequency ``f`` over the training images: never
(``f = 0``), rare (``0 < f < 0.05``), medium (``0.05 <= f < 0.3``), core (``f >= 0.3``);
the boundaries were fixed in ``docs/mechanism_predictions.md`` before the runs that test
them.
"""

from __future__ import annotations

import numpy as np
import torch

from .analysis import ink_correlation

BAND_NAMES = ("never", "rare", "medium", "core")
BAND_EDGES = (0.05, 0.3)  # rare | medium | core; "never" is f == 0
CROSSING_WINDOW = 10  # epochs of the trailing mean that must stay below 0


def ink_band(ink: np.ndarray) -> np.ndarray:
    """``(784,)`` ink frequencies -> ``(784,)`` band index into :data:`BAND_NAMES`."""
    band = np.digitize(ink, BAND_EDGES) + 1
    band[ink == 0] = 0
    return band


def survivor_counts(topology: np.ndarray, pruned: np.ndarray) -> np.ndarray:
    """Connections per pixel that each epoch's pruning kept.

    Args:
        topology: ``(epochs + 1, 784)`` recorded counts, row 0 at initialisation.
        pruned: ``(epochs, 784)`` connections each epoch's pruning removed.

    Returns:
        ``(epochs, 784)``: row ``e - 1`` is what epoch ``e`` kept.
    """
    if len(topology) != len(pruned) + 1:
        raise ValueError(f"topology has {len(topology)} rows and pruning {len(pruned)}; expected one more topology row")
    return topology[1:] - pruned


def final_survivors(state: dict[str, torch.Tensor], n_inputs: int = 784) -> np.ndarray:
    """``(784,)`` survivors of the last pruning, from a finished run's final network
    (its first SET layer's ``connections`` where ``pruned`` is off)."""
    connections, pruned = state["set_layers.0.connections"], state["set_layers.0.pruned"]
    return np.bincount(connections[~pruned, 0].numpy(), minlength=n_inputs)


def band_density(counts: np.ndarray, band: np.ndarray) -> np.ndarray:
    """``(..., 784)`` counts -> ``(..., 4)`` mean count per pixel in each band (NaN for a
    band without pixels, as a small training subset can leave the never-inked band)."""
    means = [
        counts[..., band == b].mean(axis=-1) if (band == b).any() else np.full(counts.shape[:-1], np.nan)
        for b in range(len(BAND_NAMES))
    ]
    return np.stack(means, axis=-1)


def survivor_rho(counts: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """Spearman ρ of survivors per pixel with ink frequency, per row of ``(..., 784)``."""
    return np.asarray(ink_correlation(counts, ink))


def crossing_epoch(rho: np.ndarray, window: int = CROSSING_WINDOW) -> int | None:
    """The first epoch (1-based) from which the trailing ``window``-epoch mean of ``rho``
    stays below 0 to the end; ``None`` when it never does (or the run is too short)."""
    if len(rho) < window:
        return None
    trailing = np.convolve(rho, np.ones(window) / window, mode="valid")  # entry i: epochs i+1 .. i+window
    above = np.flatnonzero(trailing >= 0)
    start = 0 if len(above) == 0 else above[-1] + 1
    return None if start >= len(trailing) else int(start + window)


def band_tipping_epoch(density: np.ndarray, window: int = CROSSING_WINDOW) -> int | None:
    """The first epoch from which the core's trailing-mean survivor density stays below the
    rare band's; ``density`` ``(epochs, 4)`` from :func:`band_density`."""
    return crossing_epoch(density[:, BAND_NAMES.index("core")] - density[:, BAND_NAMES.index("rare")], window)
