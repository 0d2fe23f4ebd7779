"""The forecast test's conditions as the notebook shows them: each condition of
``configs/forecast_test.yaml`` with its forecast and its runs finished so far.

The default profile reads the committed forecasts (``docs/forecasts/forecast_test.jsonl``)
and the finished runs in the results folder, and trains nothing (the test's runs are made by
``python -m synapses_study.training.sweep configs/forecast_test.yaml``). The smoke profile forecasts
the scaled-down runs afresh and trains them, so the notebook's pipeline is checked in
seconds.

The figure (:func:`forecast_figure`) sets the forecast against what the runs did, in two panels.

Left: rho on survivors at the last epoch, the forecast's interval (bar) and value (open
marker) per condition, beside each finished run (filled dots). Right: the crossing epoch
the same way; a condition forecast not to cross has no bar, and a run that did not cross
sits on the "none" row at the right edge.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np

from ..forecast.predict import forecast
from ..forecast.score import Observed, observe
from ..runs.run_dir import RunDir
from ..setup.config import ExperimentConfig
from ..setup.paths import REPO_ROOT
from ..training.sweep import ensure_runs
from .notebook import NotebookSetup

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


SWEEP = "forecast_test"
FORECASTS = REPO_ROOT / "docs" / "forecasts" / f"{SWEEP}.jsonl"


def committed_forecasts(path: Path = FORECASTS) -> dict[str, dict]:
    """run id -> its committed forecast (one JSON line each)."""
    return {entry["run_id"]: entry for entry in map(json.loads, path.read_text().splitlines()) if entry}


# How a field that varies within an entry is named on the figure.
FIELD_WORDS = {"input_regrowth_scale": "newborns {:g}σ", "input_lr_factor": "first layer lr × {:.3g}"}


def _label(entry: str, config: ExperimentConfig, varying: list[str]) -> str:
    parts = [FIELD_WORDS.get(name, name.replace("_", " ") + " {}").format(getattr(config, name)) for name in varying]
    return entry.replace("_", " ") + (f": {', '.join(parts)}" if parts else "")


def conditions_of(nb: NotebookSetup) -> tuple[list[Condition], int]:
    """The conditions in the sweep file's order and the runs' last epoch."""
    sweep = nb.sweep(SWEEP)
    configs = [run.config for run in sweep.runs]
    if nb.smoke:
        found = {config.run_id(): asdict(forecast(config)) for config in configs}
        ensure_runs(configs, nb.results_dir, progress=False)
    else:
        found = committed_forecasts()
    groups: dict[tuple[str, str], list[ExperimentConfig]] = {}
    for run in sweep.runs:
        key = (run.entry, run.config.replace(seed=0).run_id())
        groups.setdefault(key, []).append(run.config)
    conditions = []
    for (entry, _), members in groups.items():
        entry_configs = [run.config for run in sweep.runs if run.entry == entry]
        varying = [
            f.name
            for f in fields(ExperimentConfig)
            if f.name != "seed" and len({repr(getattr(c, f.name)) for c in entry_configs}) > 1
        ]
        runs: list[Observed | None] = []
        for config in members:
            folder = RunDir.of(config, nb.results_dir)
            runs.append(observe(folder) if folder.config_file.exists() and folder.is_finished(config) else None)
        conditions.append(Condition(_label(entry, members[0], varying), found[members[0].run_id()], runs))
    return conditions, configs[0].epochs
