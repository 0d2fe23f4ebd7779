"""The forecast test's conditions as the notebook shows them: each condition of
``configs/forecast_test.yaml`` with its forecast and its runs finished so far.

The default profile reads the committed forecasts (``docs/forecasts/forecast_test.jsonl``)
and the finished runs in the results folder, and trains nothing (the test's runs are made by
``python -m synapses_study.sweep configs/forecast_test.yaml``). The smoke profile forecasts
the scaled-down runs afresh and trains them, so the notebook's pipeline is checked in
seconds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

from .config import ExperimentConfig
from .forecast import forecast
from .forecast_plot import Condition
from .forecast_score import Observed, observe
from .notebook import NotebookSetup
from .paths import REPO_ROOT
from .run_dir import RunDir
from .sweep import ensure_runs

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
