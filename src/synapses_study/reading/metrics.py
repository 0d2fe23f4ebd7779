"""A finished run's summary numbers, read from its folder: last-epoch values, the test
loss's minimum and the accuracy after it, the ink correlation along the way, who got
pruned. One dict per run; :mod:`synapses_study.writeup.tables` pools them over seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..measures.analysis import BLANK_BELOW, TRAILING_WINDOW, ink_correlation, pruning_by_region
from ..measures.topology import center_ratio
from ..runs.run_dir import RunDir
from .results import final_survivor_counts, load_metrics, survivor_ink_correlation, training_ink


def run_summary(run_dir: Path) -> dict[str, float]:
    """Last-epoch metrics of a finished run; its first layer's survivors at the last epoch
    (:func:`final_survivor_counts`): their Spearman correlation with ink (``ink_rho``) and
    centre ratio (``center_ratio``); and the peak of the recorded ``center_ratio`` along
    the way, with its epoch (``peak_center_ratio``, ``peak_epoch``: the recorded topology,
    since most runs did not record their pruning per epoch)."""
    metrics = load_metrics(run_dir)
    last = metrics.iloc[-1]
    peak = int(metrics["center_ratio"].to_numpy().argmax())
    summary = {key: float(last[key]) for key in ("train_loss", "train_acc", "test_loss", "test_acc")}
    survivors = final_survivor_counts(run_dir)
    summary["center_ratio"] = float(center_ratio(survivors))
    summary["ink_rho"] = float(ink_correlation(survivors, training_ink()))
    summary["peak_center_ratio"] = float(metrics["center_ratio"].iloc[peak])
    summary["peak_epoch"] = float(metrics["epoch"].iloc[peak])
    return summary


SMOOTHING = 25  # epochs: test metrics move by more than their trend from one epoch to the next


def overfitting_summary(run_dir: Path, window: int = SMOOTHING) -> dict[str, float]:
    """Where a run's test loss bottomed out and what test accuracy did after it, on
    centred ``window``-epoch moving averages (the whole run if it is shorter): the minimum
    smoothed test loss and its epoch, the smoothed test accuracy there, both at the end
    (the last epoch with a full window), the change in accuracy between the two, and the
    highest smoothed test accuracy with its epoch."""
    metrics = load_metrics(run_dir)
    window = min(window, len(metrics))
    smooth = metrics[["test_loss", "test_acc"]].rolling(window, center=True).mean()
    smooth["epoch"] = metrics["epoch"]
    smooth = smooth.dropna()
    best, end = smooth.iloc[int(np.argmin(smooth["test_loss"].to_numpy()))], smooth.iloc[-1]
    peak = smooth.iloc[int(np.argmax(smooth["test_acc"].to_numpy()))]
    return {
        "min_test_loss": float(best["test_loss"]),
        "min_epoch": float(best["epoch"]),
        "acc_at_min": float(best["test_acc"]),
        "test_loss": float(end["test_loss"]),
        "test_acc": float(end["test_acc"]),
        "acc_gain": float(end["test_acc"] - best["test_acc"]),
        "max_acc": float(peak["test_acc"]),
        "max_acc_epoch": float(peak["epoch"]),
    }


def outcome_summary(run_dir: Path) -> dict[str, float]:
    """:func:`run_summary` (last-epoch values) with the smoothed test accuracy's peak of
    :func:`overfitting_summary`."""
    smoothed = overfitting_summary(run_dir)
    return {**run_summary(run_dir), "max_acc": smoothed["max_acc"], "max_acc_epoch": smoothed["max_acc_epoch"]}


DRIFT_EPOCHS = (50, 155, 300, 500, 700, 1000)


def drift_summary(run_dir: Path, epochs: tuple[int, ...] = DRIFT_EPOCHS, survivors: bool = False) -> dict[str, float]:
    """A run's Spearman correlation of connections with ink, averaged over the
    :data:`TRAILING_WINDOW` epochs ending at each of ``epochs`` (keys ``"rho@<epoch>"``; fewer near
    the start), NaN for epochs past its end: on the recorded topology, or with ``survivors``
    on the connections each epoch's pruning kept (runs with ``record_pruning`` only)."""
    if survivors:
        rho = survivor_ink_correlation(run_dir)["ink_rho"].to_numpy()  # row e after epoch e
    else:
        rho = np.atleast_1d(ink_correlation(RunDir(run_dir).topology(), training_ink()))
    return {
        f"rho@{e}": float(np.mean(rho[max(0, e - TRAILING_WINDOW + 1) : e + 1])) if e < len(rho) else float("nan")
        for e in epochs
    }


def pruning_summary(run_dir: Path, blank_below: float = BLANK_BELOW) -> dict[str, float]:
    """:func:`synapses_study.measures.analysis.pruning_by_region` of a recorded run over its last
    :data:`TRAILING_WINDOW` epochs (means): the blank pixels' share of the connections, and per
    region the fraction of its connections pruned and their mean ``|weight|`` just before
    pruning; with the blank pixels' share of all pixels, the share of connections uniform
    placement would give."""
    ink = training_ink()
    regions = pruning_by_region(*RunDir(run_dir).pruning(), RunDir(run_dir).topology(), ink, blank_below=blank_below)
    window = regions[regions["epoch"] > regions["epoch"].max() - TRAILING_WINDOW]
    last = window.groupby("region")[["share_of_connections", "pruned_fraction", "mean_abs_weight"]].mean()
    summary = {
        "blank_pixels": float((ink < blank_below).mean()),
        "blank_share": float(last.loc["blank", "share_of_connections"]),
    }
    for region in ("blank", "inked"):
        summary[f"pruned_{region}"] = float(last.loc[region, "pruned_fraction"])
        summary[f"weight_{region}"] = float(last.loc[region, "mean_abs_weight"])
    return summary
