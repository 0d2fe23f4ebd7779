"""Scoring committed forecasts against the runs that test them, beside two baselines and
the early rule, all written down before those runs were made.

    python -m synapses_study.forecast.score docs/forecasts/forecast_test.jsonl

For each forecast line whose run is finished (with pruning recorded, so rho is read on
survivors), and for each predictor:

* **the forecast** (:mod:`synapses_study.forecast.predict`): a hit on "crosses" when it says
  whether the run crosses; on the crossing epoch when both cross and the observed epoch lies
  in its interval; on rho at the end when the observed value (mean of the last 10 epochs)
  lies in its interval;
* **trend** (baseline): rho on survivors over epochs 51-100 fitted by a straight line and
  extended to the last epoch: crosses when the line ends below 0 (its crossing epoch: where
  the line meets 0);
* **no decay crosses** (baseline): crosses when ``weight_decay`` is 0;
* **early rule**: crosses when the equilibrium of the run's own rates over epochs 51-100 is
  inverted (like the trend, it reads the scored run itself, so it speaks only once a run has
  done 100 epochs: not a forecast from the configuration): per pixel, the hazard ``h``
  (connections pruned over those present, with half a death added per pixel so that no
  hazard is 0) and the births per epoch ``b`` give equilibrium survivors
  ``b / h * (1 - h)``, and their rho with ink frequency is below 0.

Runs not yet finished are listed as pending, never scored.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..measures.analysis import ink_correlation
from ..measures.survivors import crossing_epoch, survivor_counts, survivor_rho
from ..reading.results import select_runs, training_ink
from ..runs.run_dir import RunDir
from ..setup.paths import REPO_ROOT, results_root
from .fit import FIT_EPOCHS, FITTING_RUNS, REPLICATE_RUNS
from .model import CONSTANTS_FILE, Constants
from .predict import STREAMS

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
        config = run.config() if run.config_file.exists() else None
        if config is not None and run.is_finished(config):
            scored.append(Scored(entry["run_id"], observe(run), entry, config.weight_decay))
        else:
            scored.append(Scored(entry["run_id"], None, entry))
    return scored


def _hit(flag: bool | None) -> str:
    return "–" if flag is None else ("hit" if flag else "miss")


@dataclass(frozen=True)
class Judged:
    """One finished run's hits (``None``: the predictor says nothing about it)."""

    item: Scored
    forecast: bool | None  # "crosses" right
    trend: bool | None
    no_decay: bool
    early_rule: bool | None
    epoch: bool | None  # the crossing epoch inside the forecast's interval (both cross)
    rho: bool | None  # rho at the end inside the forecast's interval


def judge(item: Scored) -> Judged:
    """Every predictor's hit or miss on one finished run (see the module's docstring)."""
    obs, f = item.observed, item.forecast
    assert obs is not None
    crossed = obs.crossing is not None
    trend = trend_baseline(obs.rho)
    epoch_hit = None
    if f["crosses"] and crossed:
        low, high = f["crossing_interval"]
        epoch_hit = bool(low <= obs.crossing <= high)
    return Judged(
        item,
        None if f["crosses"] is None else f["crosses"] == crossed,
        None if trend is None else trend[0] == crossed,
        (item.weight_decay == 0) == crossed,
        None if len(obs.pruned) < EARLY_WINDOW[1] else (early_rule_rho(obs.topology, obs.pruned) < 0) == crossed,
        epoch_hit,
        None if f["rho_end"] is None else bool(f["rho_end_interval"][0] <= obs.rho_end <= f["rho_end_interval"][1]),
    )


def table(scored: list[Scored]) -> str:
    """The per-run scoring table in Markdown (finished runs only), then a line on the pending."""
    rows = [
        "| run | observed crossing | forecast crossing [interval] | observed ρ end | forecast ρ end [interval] "
        "| crosses: forecast | trend | no decay | early rule |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    pending = [item.run_id for item in scored if item.observed is None]
    for judged in (judge(item) for item in scored if item.observed is not None):
        obs, f = judged.item.observed, judged.item.forecast
        assert obs is not None
        forecast_cross = (
            "none"
            if not f["crosses"]
            else f"{f['crossing_epoch']} [{f['crossing_interval'][0]}, {f['crossing_interval'][1]}]"
        )
        rows.append(
            f"| {judged.item.run_id} | {obs.crossing or 'none'} | {forecast_cross} ({_hit(judged.epoch)}) | "
            f"{obs.rho_end:+.3f} | {f['rho_end']:+.3f} [{f['rho_end_interval'][0]:+.3f}, "
            f"{f['rho_end_interval'][1]:+.3f}] ({_hit(judged.rho)}) | {_hit(judged.forecast)} | "
            f"{_hit(judged.trend)} | {_hit(judged.no_decay)} | {_hit(judged.early_rule)} |"
        )
    rows.append("")
    rows.append(
        f"Pending (not finished): {len(pending)} of {len(scored)} run(s)." if pending else "Every run finished."
    )
    return "\n".join(rows) + "\n"


def hits_table(scored: list[Scored]) -> str:
    """Hits per predictor over the finished runs, in Markdown: "k of n" for "crosses", and
    for the forecast also the crossing epoch and rho at the end inside their intervals."""
    judged = [judge(item) for item in scored if item.observed is not None]

    def count(flags: list[bool | None]) -> str:
        known = [flag for flag in flags if flag is not None]
        return f"{sum(known)} of {len(known)}"

    rows = [
        "| predictor | crosses or not | crossing epoch in its interval | ρ at the end in its interval |",
        "|---|---|---|---|",
        f"| forecast | {count([j.forecast for j in judged])} | {count([j.epoch for j in judged])} | "
        f"{count([j.rho for j in judged])} |",
        f"| trend of epochs 51-100 | {count([j.trend for j in judged])} | – | – |",
        f"| no decay crosses | {count([j.no_decay for j in judged])} | – | – |",
        f"| early rule | {count([j.early_rule for j in judged])} | – | – |",
    ]
    return "\n".join(rows) + "\n"


def forecast_table(results: Path | None = None, hits: bool = False) -> str:
    """The write-up's scoring tables: the committed forecasts of ``configs/forecast_test.yaml``
    against their runs finished in ``results``, per run or (``hits``) per predictor."""
    scored = score(FORECAST_TEST, results)
    return hits_table(scored) if hits else table(scored)


def fit_table() -> str:
    """What the forecast was fitted on and how its intervals are made, as a two-column
    Markdown table the write-up's numbers read (``forecast:fit | ROW | value``): from the
    committed constants, the fitting runs and the test's sweep file."""
    constants = Constants.load()
    run_ids = [json.loads(line)["run_id"] for line in FORECAST_TEST.read_text().splitlines() if line.strip()]
    seeds = {run_id.rsplit("_", 2)[1] for run_id in run_ids}  # ..._s<seed>_<digest>
    rows = {
        "constants": "three",
        "conditions fitted": str(len(FITTING_RUNS)),
        "runs fitted": str(len(constants.fitted_on)),
        "rms error": f"{math.sqrt(json.loads(CONSTANTS_FILE.read_text())['objective']):.2f}",
        "streams": str(STREAMS),
        "crossing tolerance": f"{constants.crossing_tolerance:g}",
        "rho tolerance": f"{constants.rho_tolerance:.3f}",
        "test runs": str(len(run_ids)),
        "test seeds": str(len(seeds)),
    }
    return "| quantity | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows.items())


REPLICATE_SWEEP = "replicate_noise"  # more seeds of the replicate runs' condition (issue 35, §2)


def replicate_runs(results: Path | None = None) -> list[RunDir]:
    """The committed replicate runs the tolerances were fixed on (:data:`REPLICATE_RUNS`), then
    the finished runs of ``configs/replicate_noise.yaml``: one condition (scaled inputs, no
    decay), pruning recorded."""
    root = results_root(results)
    runs = [RunDir(root / name) for name in REPLICATE_RUNS]
    for config in select_runs(REPLICATE_SWEEP):
        folder = RunDir.of(config, root)
        if folder.is_finished(config):
            runs.append(folder)
    return runs


def replicate_table(results: Path | None = None) -> str:
    """The spread between replicate runs (:func:`replicate_runs`, read over their first
    ``FIT_EPOCHS`` epochs on survivors) as the write-up's two-column table
    (:func:`replicate_rows`), scored against the committed forecasts."""
    observed = []
    for run in replicate_runs(results):
        run.verified_config()
        rho = survivor_rho(survivor_counts(run.topology(), run.pruning()[0]), training_ink())[:FIT_EPOCHS]
        observed.append((run.config().seed, crossing_epoch(rho), float(rho[-END_WINDOW:].mean())))
    rows = replicate_rows(observed, score(FORECAST_TEST, results), Constants.load())
    return "| quantity | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows.items())


def replicate_rows(
    observed: list[tuple[int, int | None, float]], scored: list[Scored], committed: Constants
) -> dict[str, str]:
    """Replicate runs' ``(seed, crossing epoch or None, rho at the end)``: their crossing
    epochs and rho at the end (mean of the last ``END_WINDOW`` epochs) with standard
    deviations and half ranges, against the tolerances committed with the forecast (half
    ranges of the first three runs); and the forecast's interval hits in ``scored`` had its
    tolerances been two of these runs' standard deviations, an after-the-fact reading beside
    the committed scoring, which stands; and, for the test's conditions whose two seeds both
    cross, how far apart their crossings are."""
    crossings = np.array([c for _, c, _ in observed if c is not None], dtype=float)
    ends = np.array([e for _, _, e in observed])
    half_crossing, half_rho = (crossings.max() - crossings.min()) / 2, (ends.max() - ends.min()) / 2
    # two standard deviations: where about 95% of single runs fall about their condition's mean
    two_sd_crossing, two_sd_rho = 2 * crossings.std(ddof=1), 2 * ends.std(ddof=1)
    widen_epoch, widen_rho = two_sd_crossing - committed.crossing_tolerance, two_sd_rho - committed.rho_tolerance
    epoch_hits, rho_hits = [], []
    for item in scored:
        if item.observed is None:
            continue
        f, obs = item.forecast, item.observed
        if f["crosses"] and obs.crossing is not None:
            low, high = f["crossing_interval"]
            epoch_hits.append(low - widen_epoch <= obs.crossing <= high + widen_epoch)
        if f["rho_end"] is not None:
            low, high = f["rho_end_interval"]
            rho_hits.append(low - widen_rho <= obs.rho_end <= high + widen_rho)
    never = sum(c is None for _, c, _ in observed)
    # the test's own replicates: two seeds per condition (run ids differ only in seed and digest)
    by_condition: dict[str, list[int]] = {}
    for item in scored:
        if item.observed is not None and item.observed.crossing is not None:
            by_condition.setdefault(item.run_id.rsplit("_", 2)[0], []).append(item.observed.crossing)
    apart = sorted(max(c) - min(c) for c in by_condition.values() if len(c) == 2)
    return {
        "runs": f"{len(observed)} (seeds {', '.join(str(seed) for seed, _, _ in observed)})",
        "crossing epochs": ", ".join("none" if c is None else str(c) for _, c, _ in observed),
        "crossing epoch, sd": f"{crossings.std(ddof=1):.1f}"
        + (f" ({never} without a crossing left out)" if never else ""),
        "ρ at the end": ", ".join(f"{e:+.3f}" for _, _, e in observed),
        "ρ at the end, sd": f"{ends.std(ddof=1):.3f}",
        "half range": f"{half_crossing:g} epochs, {half_rho:.3f} in ρ",
        "committed tolerance (half range of the first three runs)": (
            f"{committed.crossing_tolerance:g} epochs, {committed.rho_tolerance:.3f} in ρ"
        ),
        "two sd": f"{two_sd_crossing:.1f} epochs, {two_sd_rho:.3f} in ρ",
        "the test's conditions: two seeds' crossing epochs apart": (
            f"{', '.join(str(a) for a in apart)} epochs ({len(apart)} conditions where both seeds cross)"
            if apart
            else "no condition where both seeds cross"
        ),
        "forecast hits, intervals widened to two sd (after the fact)": (
            f"crossing epoch {sum(epoch_hits)} of {len(epoch_hits)}, ρ at the end {sum(rho_hits)} of {len(rho_hits)}"
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synapses_study.forecast.score", description=__doc__.split("\n")[0])
    parser.add_argument("forecasts", type=Path, help="a forecast file (the --json output of the forecast, committed)")
    args = parser.parse_args(argv)
    if not args.forecasts.exists():
        print(f"error: {args.forecasts}: no such file", file=sys.stderr)
        return 2
    scored = score(args.forecasts)
    print(hits_table(scored) + "\n\n" + table(scored))
    return 0


if __name__ == "__main__":
    sys.exit(main())
