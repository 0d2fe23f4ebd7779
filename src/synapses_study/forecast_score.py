"""Scoring committed forecasts against the runs that test them, beside two baselines and
the early rule, all written down before those runs were made.

    python -m synapses_study.forecast_score docs/forecasts/forecast_test.jsonl

For each forecast line whose run is finished (with pruning recorded, so rho is read on
survivors), and for each predictor:

* **the forecast** (:mod:`synapses_study.forecast`): a hit on "crosses" when it says
  whether the run crosses; on the crossing epoch when both cross and the observed epoch lies
  in its interval; on rho at the end when the observed value (mean of the last 10 epochs)
  lies in its interval;
* **trend** (baseline): rho on survivors over epochs 51-100 fitted by a straight line and
  extended to the last epoch: crosses when the line ends below 0 (its crossing epoch: where
  the line meets 0);
* **no decay crosses** (baseline): crosses when ``weight_decay`` is 0;
* **early rule**: crosses when the equilibrium of the run's own rates over epochs 51-100 is
  inverted: per pixel, the hazard ``h`` (connections pruned over those present, with half a
  death added per pixel so that no hazard is 0) and the births per epoch ``b`` give
  equilibrium survivors ``b / h * (1 - h)``, and their rho with ink frequency is below 0.

Runs not yet finished are listed as pending, never scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .analysis import ink_correlation
from .paths import REPO_ROOT, results_root
from .results import training_ink
from .run_dir import RunDir
from .survivors import crossing_epoch, survivor_counts, survivor_rho

FORECAST_TEST = REPO_ROOT / "docs" / "forecasts" / "forecast_test.jsonl"
EARLY_WINDOW = (51, 100)  # epochs (1-based, inclusive) the early rule and the trend read
END_WINDOW = 10


@dataclass(frozen=True)
class Observed:
    """What a finished run did: its crossing epoch (``None``: none) and rho at the end."""

    crossing: int | None
    rho_end: float
    rho: np.ndarray  # (epochs,) on survivors
    topology: np.ndarray  # (epochs + 1, 784)
    pruned: np.ndarray  # (epochs, 784)


def observe(run: RunDir) -> Observed:
    """Read a finished run recorded with pruning (verified first)."""
    run.verified_config()
    pruned, _ = run.pruning()
    topology = run.topology()
    rho = survivor_rho(survivor_counts(topology, pruned), training_ink())
    return Observed(crossing_epoch(rho), float(rho[-END_WINDOW:].mean()), rho, topology, pruned)


def trend_baseline(rho: np.ndarray, window: tuple[int, int] = EARLY_WINDOW) -> tuple[bool, int | None] | None:
    """(crosses, crossing epoch) of the straight line through ``rho`` over ``window``,
    extended to the last epoch; ``None`` for a run shorter than the window."""
    if len(rho) < window[1]:
        return None
    epochs = np.arange(window[0], window[1] + 1)
    slope, intercept = np.polyfit(epochs, rho[window[0] - 1 : window[1]], 1)
    last = len(rho)
    crosses = bool(slope * last + intercept < 0)
    if not crosses:
        return False, None
    at_zero = -intercept / slope if slope < 0 else window[0]
    return True, int(np.clip(np.ceil(at_zero), window[0], last))


def early_rule_rho(topology: np.ndarray, pruned: np.ndarray, window: tuple[int, int] = EARLY_WINDOW) -> float:
    """rho of the equilibrium survivors of the run's own rates over ``window`` (see the
    module's docstring). ``topology`` ``(epochs + 1, 784)``, ``pruned`` ``(epochs, 784)``."""
    first, last = window
    present = topology[first : last + 1].astype(np.float64)  # epochs first..last
    deaths = pruned[first - 1 : last].astype(np.float64)
    hazard = (deaths.sum(0) + 0.5) / (present.sum(0) + 1.0)
    # births at the start of epoch e + 1: what it holds beyond what epoch e's pruning kept
    births = (topology[first + 1 : last + 1] - (topology[first:last] - pruned[first - 1 : last - 1])).mean(0)
    equilibrium = np.maximum(births, 0.0) / hazard * (1 - hazard)
    return float(ink_correlation(equilibrium, training_ink()))


@dataclass(frozen=True)
class Scored:
    """One forecast line against its run."""

    run_id: str
    observed: Observed | None  # None: the run is not finished
    forecast: dict
    weight_decay: float | None = None  # the run's, once finished (the "no decay" baseline reads it)


def score(forecast_file: Path, results: Path | None = None) -> list[Scored]:
    """Each line of a forecast file (``--json`` output of the forecast) with its run."""
    root = results_root(results)
    scored = []
    for line in forecast_file.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        run = RunDir(root / entry["run_id"])
        finished = run.config_file.exists() and run.is_finished(run.config())
        if finished:
            scored.append(Scored(entry["run_id"], observe(run), entry, run.config().weight_decay))
        else:
            scored.append(Scored(entry["run_id"], None, entry))
    return scored


def _hit(flag: bool | None) -> str:
    return "–" if flag is None else ("hit" if flag else "miss")


def table(scored: list[Scored]) -> str:
    """The scoring table in Markdown: one row per finished run, then the hit counts."""
    rows = [
        "| run | observed crossing | forecast crossing [interval] | observed ρ end | forecast ρ end [interval] "
        "| crosses: forecast | trend | no decay | early rule |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    hits: dict[str, list[bool]] = {
        "forecast": [],
        "trend": [],
        "no decay": [],
        "early rule": [],
        "epoch": [],
        "rho": [],
    }
    pending = []
    for item in scored:
        if item.observed is None:
            pending.append(item.run_id)
            continue
        obs, f = item.observed, item.forecast
        crossed = obs.crossing is not None
        model_hit = None if f["crosses"] is None else f["crosses"] == crossed
        trend = trend_baseline(obs.rho)
        trend_hit = None if trend is None else trend[0] == crossed
        decay_hit = (item.weight_decay == 0) == crossed
        early_hit = (
            None if len(obs.pruned) < EARLY_WINDOW[1] else (early_rule_rho(obs.topology, obs.pruned) < 0) == crossed
        )
        epoch_hit = None
        if f["crosses"] and crossed:
            low, high = f["crossing_interval"]
            epoch_hit = low <= obs.crossing <= high  # type: ignore[operator]
        rho_hit = None if f["rho_end"] is None else f["rho_end_interval"][0] <= obs.rho_end <= f["rho_end_interval"][1]
        for name, flag in (
            ("forecast", model_hit),
            ("trend", trend_hit),
            ("no decay", decay_hit),
            ("early rule", early_hit),
            ("epoch", epoch_hit),
            ("rho", rho_hit),
        ):
            if flag is not None:
                hits[name].append(flag)
        forecast_cross = (
            "none"
            if not f["crosses"]
            else f"{f['crossing_epoch']} [{f['crossing_interval'][0]}, {f['crossing_interval'][1]}]"
        )
        rows.append(
            f"| {item.run_id} | {obs.crossing or 'none'} | {forecast_cross} ({_hit(epoch_hit)}) | {obs.rho_end:+.3f} | "
            f"{f['rho_end']:+.3f} [{f['rho_end_interval'][0]:+.3f}, {f['rho_end_interval'][1]:+.3f}] "
            f"({_hit(rho_hit)}) | "
            f"{_hit(model_hit)} | {_hit(trend_hit)} | {_hit(decay_hit)} | {_hit(early_hit)} |"
        )
    counts = ", ".join(f"{name} {sum(v)}/{len(v)}" for name, v in hits.items())
    rows.append("")
    rows.append(f"Hits: {counts}." + (f" Pending (not finished): {len(pending)} run(s)." if pending else ""))
    return "\n".join(rows)


def forecast_table(results: Path | None = None) -> str:
    """The write-up's scoring table: the committed forecasts of ``configs/forecast_test.yaml``
    against their runs finished in ``results``."""
    return table(score(FORECAST_TEST, results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synapses_study.forecast_score", description=__doc__.split("\n")[0])
    parser.add_argument("forecasts", type=Path, help="a forecast file (the --json output of the forecast, committed)")
    args = parser.parse_args(argv)
    if not args.forecasts.exists():
        print(f"error: {args.forecasts}: no such file", file=sys.stderr)
        return 2
    print(table(score(args.forecasts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
