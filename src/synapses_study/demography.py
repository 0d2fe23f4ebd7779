"""Births and deaths of first-layer connections by ink band, and the account built on them.

:func:`demography` reads a lifetime record (``lifetimes.npz``, :mod:`.lifetimes`): each
epoch, per band, how many connections were newborns (regrown at the epoch's start) and how
many of them the epoch's pruning kept (newborn survival ``s``), how many were established
(older) and how many of those it removed (established hazard ``h``), and how large the
newborns were born.

:func:`simulate` is the age-structured birth-death account of
``docs/mechanism_predictions.md``: survivors per band follow

    S_b(t) = (1 - h_b(t)) S_b(t - 1) + s_b(t) A_b(t),  A_b(t) = k(t - 1) m_b / 784,

with ``k`` the connections pruned per epoch (regrown uniformly: ``m_b`` pixels of band
``b`` get ``m_b / 784`` of them).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .analysis import ink_correlation
from .lifetimes import LifetimeRecord
from .survivors import BAND_NAMES, crossing_epoch


def demography(record: LifetimeRecord, band: np.ndarray, n_inputs: int = 784) -> pd.DataFrame:
    """One row per (epoch, band) of a lifetime record.

    Args:
        record: the first layer's lifetime record.
        band: ``(n_inputs,)`` band index of each pixel (:func:`.survivors.ink_band`).

    Returns:
        Columns ``epoch``, ``band``, ``newborns``, ``newborn_survivors``, ``established``,
        ``established_deaths``, ``newborn_w0`` (median initial |w| of the newborns),
        ``survivor_w0`` (the same for those that survived), ``newborn_drift`` (mean of
        ``|w| before pruning - |w0|`` over newborns: how far one epoch moved them from zero),
        ``theta_pos`` and ``theta_neg`` (the epoch's pruning thresholds).
    """
    keys = record.initial_keys.astype(np.int64).copy()
    born = np.ones(len(keys), dtype=np.int64)
    initial = np.abs(record.initial_weights.astype(np.float64))
    rows = []
    for epoch in range(1, record.epochs + 1):
        if epoch >= 2:
            moved = record.pruned_mask(epoch - 1)
            keys[moved], born[moved] = record.born_keys[epoch - 2], epoch
            initial[moved] = np.abs(record.born_weights[epoch - 2].astype(np.float64))
        pruned = record.pruned_mask(epoch)
        slot_band = band[keys % n_inputs]
        newborn = born == epoch
        before = np.abs(record.weights[epoch - 1].astype(np.float64))
        theta_pos, theta_neg = (float(v) for v in record.thresholds[epoch - 1])
        for b, name in enumerate(BAND_NAMES):
            young, old = newborn & (slot_band == b), ~newborn & (slot_band == b)
            kept = young & ~pruned
            rows.append(
                {
                    "epoch": epoch,
                    "band": name,
                    "newborns": int(young.sum()),
                    "newborn_survivors": int(kept.sum()),
                    "established": int(old.sum()),
                    "established_deaths": int((old & pruned).sum()),
                    "newborn_w0": float(np.median(initial[young])) if young.any() else np.nan,
                    "survivor_w0": float(np.median(initial[kept])) if kept.any() else np.nan,
                    "newborn_drift": float((before[young] - initial[young]).mean()) if young.any() else np.nan,
                    "theta_pos": theta_pos,
                    "theta_neg": theta_neg,
                }
            )
    return pd.DataFrame(rows)


def rates(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(s, h)``, each ``(epochs, 4)``: newborn survival and established hazard per epoch
    and band from :func:`demography` (NaN where a band had none)."""
    wide = table.pivot(index="epoch", columns="band")
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (wide["newborn_survivors"] / wide["newborns"])[list(BAND_NAMES)].to_numpy(float)
        h = (wide["established_deaths"] / wide["established"])[list(BAND_NAMES)].to_numpy(float)
    return s, h


def windowed(values: np.ndarray, window: int) -> np.ndarray:
    """``(epochs, k)`` -> the same shape, each row the mean over its window of ``window``
    epochs (epochs 1..w, w+1..2w, ...), NaN ignored: rates of single epochs are noisy."""
    out = np.empty_like(values, dtype=float)
    for start in range(0, len(values), window):
        block = values[start : start + window]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column stays NaN
            out[start : start + window] = np.nanmean(block, axis=0)
    return out


def simulate(
    start: np.ndarray, pruned_total: np.ndarray, s: np.ndarray, h: np.ndarray, band_pixels: np.ndarray
) -> np.ndarray:
    """The birth-death account, per band.

    Args:
        start: ``(4,)`` survivors per band after epoch 1.
        pruned_total: ``(epochs,)`` connections pruned at each epoch (all bands).
        s, h: ``(epochs, 4)`` newborn survival and established hazard at each epoch.
        band_pixels: ``(4,)`` pixels per band.

    Returns:
        ``(epochs, 4)`` survivors per band after each epoch (row 0: ``start``).
    """
    share = band_pixels / band_pixels.sum()
    survivors = np.empty((len(pruned_total), len(start)))
    survivors[0] = start
    for t in range(1, len(pruned_total)):
        survivors[t] = (1 - h[t]) * survivors[t - 1] + s[t] * pruned_total[t - 1] * share
    return survivors


def predicted_rho(survivors: np.ndarray, band: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """``(epochs,)`` ink ρ of the topology in which every pixel holds its band's mean
    survivor density (``survivors`` ``(epochs, 4)`` counts per band)."""
    density = survivors / np.bincount(band, minlength=len(BAND_NAMES))
    return np.asarray(ink_correlation(density[:, band], ink))


def predicted_crossing(survivors: np.ndarray, band: np.ndarray, ink: np.ndarray) -> int | None:
    """The crossing epoch (:func:`.survivors.crossing_epoch`) of :func:`predicted_rho`."""
    return crossing_epoch(predicted_rho(survivors, band, ink))
