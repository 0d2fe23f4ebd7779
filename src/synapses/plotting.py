"""Figures of the demo and the study (matplotlib; the notebooks only choose what to show).

Every function draws into an ``ax`` (or makes a figure) and returns it; :func:`save_figure`
writes a PNG with fixed metadata, so that regenerating a figure from the same results gives
the same file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .topology import as_image, trend

FIGURES = Path(__file__).resolve().parents[2] / "figures"


def save_figure(fig: matplotlib.figure.Figure, name: str, directory: str | Path | None = None, dpi: int = 110) -> Path:
    """Save ``fig`` as ``<directory>/<name>.png`` (default: the repository's figures/)."""
    directory = Path(directory) if directory is not None else FIGURES
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    # No software version or date in the file: same results, same bytes.
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path


def weight_histogram(ax: plt.Axes, weights: np.ndarray, title: str, bins: int = 80) -> plt.Axes:
    ax.hist(np.asarray(weights), bins=bins, color="tab:blue")
    ax.set(title=title, xlabel="weight", ylabel="connections")
    return ax


def connections_per_input(ax: plt.Axes, counts: np.ndarray, title: str = "Connections per input index") -> plt.Axes:
    ax.bar(np.arange(len(counts)), counts, width=1.0, color="tab:blue")
    ax.set(title=title, xlabel="input index", ylabel="connections")
    return ax


def pixel_heatmap(ax: plt.Axes, counts: np.ndarray, title: str = "Connections per input pixel", vmin: float | None = None, vmax: float | None = None, colorbar: bool = True) -> plt.Axes:
    """28 x 28 heatmap of ``counts`` ``(784,)``, viridis as in the original."""
    image = ax.imshow(as_image(counts), cmap="viridis", vmin=vmin, vmax=vmax)
    ax.set(title=title, xticks=[], yticks=[])
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def trend_curve(ax: plt.Axes, counts: np.ndarray, label: str | None = None, **style) -> plt.Axes:
    """Mean connections over centred squares of side 2..28; falling = positive learning."""
    sides = 2 * np.arange(1, 15)
    ax.plot(sides, trend(counts), marker="o", ms=3, label=label, **style)
    ax.set(xlabel="side of the centred square (pixels)", ylabel="mean connections per pixel")
    return ax


def history(axes: Sequence[plt.Axes], metrics: pd.DataFrame, label: str | None = None, **style) -> None:
    """Loss (``axes[0]``) and accuracy (``axes[1]``), train dashed and test solid."""
    for ax, kind in zip(axes, ("loss", "acc")):
        ax.plot(metrics["epoch"], metrics[f"train_{kind}"], ls="--", label=f"{label or ''} train".strip(), **style)
        ax.plot(metrics["epoch"], metrics[f"test_{kind}"], ls="-", label=f"{label or ''} test".strip(), **style)
        ax.set(xlabel="epoch", ylabel="accuracy" if kind == "acc" else "loss (nll)")


def band(ax: plt.Axes, runs: pd.DataFrame, y: str, by: str, palette: str = "viridis", label: str = "", x: str = "epoch", spread: str = "ci95", **style) -> plt.Axes:
    """Mean of ``y`` against ``x`` per value of ``by``, with a band across seeds.

    ``runs`` is tidy (one row per run and epoch, e.g. from ``load_runs``). With
    ``spread="ci95"`` the band is mean +- t(0.975, n-1) * std / sqrt(n) over the n seeds at
    each ``x``; with ``"range"`` it spans the lowest to the highest seed (more telling than a
    t-interval for two seeds, whose t factor is 12.7); none with a single seed. ``label``
    prefixes the legend entries, which read ``by = value`` (the value alone when ``by`` is
    ``"label"``); ``style`` goes to ``ax.plot``.
    """
    if spread not in ("ci95", "range"):
        raise ValueError(f"spread must be 'ci95' or 'range', got {spread!r}")
    from scipy import stats

    values = sorted(runs[by].unique())
    colours = plt.get_cmap(palette)(np.linspace(0, 0.9, len(values)))
    for colour, value in zip(colours, values):
        group = runs[runs[by] == value].groupby(x)[y]
        mean, std, n = group.mean(), group.std(), group.count()
        name = f"{value:g}" if isinstance(value, float) else str(value)
        name = name if by == "label" else f"{by} = {name}"
        ax.plot(mean.index, mean.values, color=colour, label=f"{label}{name}", **style)
        if n.max() > 1 and spread == "range":
            ax.fill_between(mean.index, group.min(), group.max(), color=colour, alpha=0.2, lw=0)
        elif n.max() > 1:
            half = stats.t.ppf(0.975, (n - 1).clip(lower=1)) * std / np.sqrt(n)
            ax.fill_between(mean.index, mean - half, mean + half, color=colour, alpha=0.2, lw=0)
    ax.set(xlabel=x.replace("_", " "), ylabel=y)
    return ax


def dose_response(ax: plt.Axes, last: pd.DataFrame, y: str, x: str = "weight_decay", **style) -> plt.Axes:
    """Mean of ``y`` across seeds against a coefficient ``x`` (log axis), with 95%
    t-interval error bars; ``x = 0`` is drawn one decade left of the smallest non-zero
    value and labelled 0. ``last`` has one row per run (e.g. the last epoch of each)."""
    from scipy import stats

    group = last.groupby(x)[y]
    mean, std, n = group.mean(), group.std().fillna(0), group.count()
    half = stats.t.ppf(0.975, (n - 1).clip(lower=1)) * std / np.sqrt(n)
    values = mean.index.to_numpy(dtype=float)
    nonzero = values[values > 0]
    zero_at = nonzero.min() / 10 if len(nonzero) else 1.0
    where = np.where(values > 0, values, zero_at)
    ax.errorbar(where, mean.values, yerr=half.values, marker="o", capsize=3, **style)
    ax.set_xscale("log")
    ticks = sorted(set(where))
    ax.set_xticks(ticks, [("0" if t == zero_at and 0 in values else f"{t:g}") for t in ticks], fontsize=8)
    ax.set(xlabel=x.replace("_", " "), ylabel=y)
    return ax

