"""The forecast against what the runs did: one figure, two panels.

Left: rho on survivors at the last epoch, the forecast's interval (bar) and value (open
marker) per condition, beside each finished run (filled dots). Right: the crossing epoch
the same way; a condition forecast not to cross has no bar, and a run that did not cross
sits on the "none" row at the right edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np

from .forecast_score import Observed

FORECAST_COLOUR = "#0072B2"  # Okabe-Ito blue: the model
RUN_COLOUR = "#000000"


@dataclass(frozen=True)
class Condition:
    """One condition of a forecast file: its label, the forecast (one JSON line of the
    forecast; the same for every seed) and the runs finished so far (``None``: pending)."""

    label: str
    forecast: dict
    runs: list[Observed | None]


def forecast_figure(conditions: list[Condition], last_epoch: int) -> matplotlib.figure.Figure:
    """The two panels for ``conditions`` (top to bottom in the given order); crossings
    that did not happen are drawn at ``last_epoch * 1.12`` (the "none" column)."""
    fig, (rho_ax, cross_ax) = plt.subplots(
        1, 2, figsize=(12, 0.42 * len(conditions) + 1.6), sharey=True, layout="constrained"
    )
    rows = np.arange(len(conditions))[::-1]
    none_at = last_epoch * 1.12
    for row, condition in zip(rows, conditions):
        f = condition.forecast
        if f["rho_end"] is not None:
            low, high = f["rho_end_interval"]
            rho_ax.plot([low, high], [row, row], color=FORECAST_COLOUR, lw=4, alpha=0.45, solid_capstyle="butt")
            rho_ax.plot(f["rho_end"], row, "o", mfc="white", mec=FORECAST_COLOUR, ms=7)
            if f["crosses"]:
                low, high = f["crossing_interval"]
                cross_ax.plot([low, high], [row, row], color=FORECAST_COLOUR, lw=4, alpha=0.45, solid_capstyle="butt")
                cross_ax.plot(f["crossing_epoch"], row, "o", mfc="white", mec=FORECAST_COLOUR, ms=7)
            else:
                cross_ax.plot(none_at, row, "o", mfc="white", mec=FORECAST_COLOUR, ms=7)
        finished = [run for run in condition.runs if run is not None]
        offsets = np.linspace(-0.15, 0.15, len(finished)) if len(finished) > 1 else [0.0]
        for offset, run in zip(offsets, finished):
            rho_ax.plot(run.rho_end, row + offset, "o", color=RUN_COLOUR, ms=4)
            cross_ax.plot(
                run.crossing if run.crossing is not None else none_at, row + offset, "o", color=RUN_COLOUR, ms=4
            )
    labels = [f"{c.label} ({sum(r is not None for r in c.runs)} of {len(c.runs)} runs done)" for c in conditions]
    rho_ax.set_yticks(rows, labels, fontsize=9)
    rho_ax.axvline(0, color="grey", lw=0.8)
    rho_ax.set_xlabel(f"ink ρ of survivors, epoch {last_epoch}")
    cross_ax.set_xlim(0, last_epoch * 1.18)
    ticks = [t for t in np.linspace(0, last_epoch, 5)]
    cross_ax.set_xticks([*ticks, none_at], [*(f"{t:.0f}" for t in ticks), "none"])
    cross_ax.set_xlabel("crossing epoch")
    for ax in (rho_ax, cross_ax):
        ax.grid(axis="x", color="#dddddd", lw=0.6)
    handles = [
        plt.Line2D([], [], color=FORECAST_COLOUR, lw=4, alpha=0.45, label="forecast interval"),
        plt.Line2D([], [], ls="", marker="o", mfc="white", mec=FORECAST_COLOUR, label="forecast"),
        plt.Line2D([], [], ls="", marker="o", color=RUN_COLOUR, ms=4, label="run (one per seed)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    return fig
