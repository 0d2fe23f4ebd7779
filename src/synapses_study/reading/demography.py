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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..measures.analysis import ink_correlation
from ..measures.survivors import BAND_NAMES, crossing_epoch
from ..runs.lifetimes import LifetimeRecord


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


# ---------------------------------------------------------------------------- ages, windows, counterfactuals
def window_rates(table: pd.DataFrame, events: str, at_risk: str, start: int, width: int = 50) -> np.ndarray:
    """``(windows, 4)`` pooled rates of :func:`demography`'s table per band: the sum of
    ``events`` over the sum of ``at_risk`` in each window of ``width`` epochs from epoch
    ``start + 1`` (``events="newborn_survivors", at_risk="newborns"``: newborn survival;
    ``"established_deaths", "established"``: established hazard). A last, shorter window
    is kept; NaN where a band had none at risk."""
    wide = table.pivot(index="epoch", columns="band")
    events_by_band = wide[events][list(BAND_NAMES)].to_numpy(float)
    at_risk_by_band = wide[at_risk][list(BAND_NAMES)].to_numpy(float)
    rows = []
    for a in range(start, len(events_by_band), width):
        total = at_risk_by_band[a : a + width].sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rows.append(np.where(total > 0, events_by_band[a : a + width].sum(axis=0) / total, np.nan))
    return np.array(rows)


@dataclass(frozen=True)
class AgeStructure:
    """Deaths of established first-layer connections by age, per band (``(4,)`` arrays in
    the order of :data:`.survivors.BAND_NAMES`), over the epochs from ``first_epoch`` on.

    ``old_at_risk`` / ``old_deaths``: connection-epochs and prunings of connections older
    than ``old_age`` epochs (their hazard is the ratio); ``established_deaths``: prunings of
    connections that had survived at least one pruning; ``recruit_deaths``: those of them at
    most ``young_age`` epochs old; ``recruit_shrink``: the mean over the dead recruits of
    ``(|w0| - |w|) / age`` in units of ``sigma0``, ``w0`` the weight it was born with and ``w``
    its weight just before the pruning that removed it (positive: it shrank); ``sigma0``: the
    standard deviation of every regrown connection's initial weight."""

    first_epoch: int
    old_age: int
    young_age: int
    old_at_risk: np.ndarray
    old_deaths: np.ndarray
    established_deaths: np.ndarray
    recruit_deaths: np.ndarray
    recruit_shrink: np.ndarray
    sigma0: float

    @property
    def old_hazard(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.old_deaths / self.old_at_risk

    @property
    def recruit_share(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.recruit_deaths / self.established_deaths


def age_structure(
    record: LifetimeRecord,
    band: np.ndarray,
    *,
    first_epoch: int = 151,
    old_age: int = 50,
    young_age: int = 50,
    n_inputs: int = 784,
) -> AgeStructure:
    """:class:`AgeStructure` of a lifetime record. A connection's age during epoch ``e`` is
    ``e - b``, ``b`` the epoch at whose start it was born (1 for the initial ones): 0 for a
    newborn, which this leaves out (its first pruning is the lottery, :func:`demography`)."""
    keys = record.initial_keys.astype(np.int64).copy()
    born = np.ones(len(keys), dtype=np.int64)
    initial = np.abs(record.initial_weights.astype(np.float64))
    sigma0 = (
        float(np.concatenate([w.astype(np.float64) for w in record.born_weights]).std()) if record.born_weights else 0.0
    )
    k = len(BAND_NAMES)
    at_risk, old_deaths, deaths, recruits, shrink = (np.zeros(k) for _ in range(5))
    for epoch in range(1, record.epochs + 1):
        if epoch >= 2:
            moved = record.pruned_mask(epoch - 1)
            keys[moved], born[moved] = record.born_keys[epoch - 2], epoch
            initial[moved] = np.abs(record.born_weights[epoch - 2].astype(np.float64))
        if epoch < first_epoch:
            continue
        pruned, age = record.pruned_mask(epoch), epoch - born
        slot_band = band[keys % n_inputs]
        before = np.abs(record.weights[epoch - 1].astype(np.float64))
        old, dead = age > old_age, pruned & (age >= 1)
        young = dead & (age <= young_age)
        for b in range(k):
            in_band = slot_band == b
            at_risk[b] += (old & in_band).sum()
            old_deaths[b] += (old & pruned & in_band).sum()
            deaths[b] += (dead & in_band).sum()
            recruits[b] += (young & in_band).sum()
            shrink[b] += ((initial - before)[young & in_band] / age[young & in_band]).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_shrink = shrink / recruits / sigma0
    return AgeStructure(first_epoch, old_age, young_age, at_risk, old_deaths, deaths, recruits, mean_shrink, sigma0)


def equalised_accounts(
    start: np.ndarray, pruned_total: np.ndarray, s: np.ndarray, h: np.ndarray, band_pixels: np.ndarray
) -> dict[str, np.ndarray]:
    """The account (:func:`simulate`) as fitted, and with one rate made the same in every
    band: ``"equal survival"`` gives every band, each epoch, the newborn survival of the
    layer as a whole (bands weighted by their pixels, as newborns arrive), which keeps the
    number of surviving newborns; ``"equal hazard"`` gives every band the hazard of the
    established connections as a whole (weighted by the fitted account's survivors of the
    epoch before), which keeps the number of deaths. Each ``(epochs, 4)``."""
    fitted = simulate(start, pruned_total, s, h, band_pixels)
    share = band_pixels / band_pixels.sum()
    s_equal = np.repeat(np.nansum(s * share, axis=1)[:, None], len(start), axis=1)
    weights = np.vstack([fitted[:1], fitted[:-1]])
    weights = weights / weights.sum(axis=1, keepdims=True)
    h_equal = np.repeat(np.nansum(h * weights, axis=1)[:, None], len(start), axis=1)
    return {
        "fitted": fitted,
        "equal survival": simulate(start, pruned_total, s_equal, h, band_pixels),
        "equal hazard": simulate(start, pruned_total, s, h_equal, band_pixels),
    }
