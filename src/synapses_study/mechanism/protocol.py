"""Claim 8: how much of "the SET paper's network inverts sooner" its training protocol explains.

Scores ``configs/protocol_matched.yaml`` (the demo net trained with the SET paper's
protocol, at the demo's and at the SET net's connections per pixel) against the
predictions of ``docs/protocol_predictions.md``, committed before those runs. Every run is
paired by seed with the demo net under its own protocol (``mechanism_1000``, standardised,
no decay) and with the SET paper's net (``set_mlp``, no decay).

The crossing is :func:`analysis.settles_below_zero` on recorded ink ρ (20-epoch trailing mean)
over the first :data:`EPOCHS` epochs, the instrument of the write-up's "turns negative"
fact, because the SET paper's net did not record its pruning; the survivors' crossing
(:func:`survivors.crossing_epoch`) is given beside it for the demo-net runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..measures.analysis import ink_correlation, settles_below_zero
from ..measures.survivors import crossing_epoch
from ..reading.results import training_ink
from ..runs.run_dir import RunDir
from .account import BASELINES, SEEDS, RunSet, Scored, survivors_of

EPOCHS = 300  # the protocol runs' length: every run is read over its first 300 epochs
ARMS = {"protocol": "set_protocol", "protocol + density": "set_protocol_matched_density"}


# claim 8's run sets, read by the write-up's table (run_sets) and by why_it_inverts'
# protocol figure: the demo net under its own protocol, the SET paper's net, and the demo
# net under the SET paper's protocol (each arm of ARMS)
RUN_SETS = {
    "demo": BASELINES["standardised"],
    "SET net": RunSet("set_mlp/set", (("weight_decay", 0.0),)),
    **{name: RunSet(f"protocol_matched/{entry}") for name, entry in ARMS.items()},
}


def recorded_rho(run_dir: Path, epochs: int = EPOCHS) -> np.ndarray:
    """``(epochs + 1,)`` ink ρ of the recorded topology, row ``e`` after epoch ``e`` (row 0:
    initialisation), over the first ``epochs`` epochs."""
    folder = RunDir(run_dir)
    folder.verified_config()
    return np.asarray(ink_correlation(folder.topology()[: epochs + 1], training_ink()))


def recorded_crossing(run_dir: Path, epochs: int = EPOCHS) -> int | None:
    """The epoch from which recorded ink ρ (20-epoch trailing mean) stays below 0 through
    epoch ``epochs``; ``None`` when it does not."""
    return settles_below_zero(recorded_rho(run_dir, epochs))


def explained_fraction(baseline: int | None, arm: int | None, set_net: int | None) -> float | None:
    """(baseline - arm) / (baseline - SET net): the share of the demo-to-SET-net gap in
    crossing epoch that the arm closes (1: all of it); ``None`` when a crossing is missing or
    the gap is empty."""
    if baseline is None or arm is None or set_net is None or baseline == set_net:
        return None
    return (baseline - arm) / (baseline - set_net)


def run_sets(results: Path) -> dict[str, dict[int, Path]]:
    """Seed -> run folder (seeds of :data:`SEEDS` only) of each run set: ``"demo"``,
    ``"SET net"`` and each arm of :data:`ARMS`."""
    sets = {name: run_set.finished(results) for name, run_set in RUN_SETS.items()}
    return {name: {seed: path for seed, path in runs.items() if seed in SEEDS} for name, runs in sets.items()}


def crossings(results: Path) -> dict[str, dict[int, int | None]]:
    """Recorded crossing per seed of each run set of :func:`run_sets`."""
    return {
        name: {seed: recorded_crossing(path) for seed, path in runs.items()} for name, runs in run_sets(results).items()
    }


def protocol_table(results: Path) -> str:
    """The write-up's table of claim 8: one row per run set with its crossings (recorded and,
    where pruning was recorded, on survivors) and recorded ρ at epoch 300, then the
    predictions of ``docs/protocol_predictions.md`` scored."""
    paths = run_sets(results)
    pending = [name for name, seeds in paths.items() if len(seeds) < len(SEEDS)]
    if pending:
        return "| prediction | held |\n|---|---|\n" + f"| claim 8 | pending: {', '.join(pending)} not finished |\n"
    rho = {name: {s: recorded_rho(p) for s, p in runs.items()} for name, runs in paths.items()}
    found = {name: {s: settles_below_zero(r) for s, r in runs.items()} for name, runs in rho.items()}
    rho_300 = {name: {s: float(r[EPOCHS]) for s, r in runs.items()} for name, runs in rho.items()}
    lines = [
        "| runs (seeds 0, 1) | crossing, recorded ρ | crossing, survivors | recorded ρ at epoch 300 |",
        "|---|---|---|---|",
    ]
    for name in ("demo", *ARMS, "SET net"):
        on_survivors = (
            "not recorded"
            if name == "SET net"
            else ", ".join(str(crossing_epoch(survivors_of(paths[name][s]).rho[:EPOCHS])) for s in SEEDS)
        )
        lines.append(
            f"| {name} | {', '.join(str(found[name][s]) for s in SEEDS)} | {on_survivors} | "
            f"{', '.join(f'{rho_300[name][s]:+.3f}' for s in SEEDS)} |"
        )
    lines += ["", "| prediction | measured | held |", "|---|---|---|"]
    lines += [
        f"| {r.name}: {r.prediction} | {r.measured} | {'yes' if r.held else '**no**'} |" for r in score(found, rho_300)
    ]
    return "\n".join(lines) + "\n"


def score(found: dict[str, dict[int, int | None]], rho_300: dict[str, dict[int, float]]) -> list[Scored]:
    """The four predictions of ``docs/protocol_predictions.md`` against the crossings and
    ρ at epoch 300 of each run set (seed -> value)."""
    demo, arm, dense, set_net = found["demo"], found["protocol"], found["protocol + density"], found["SET net"]
    half = [a is not None and d is not None and a <= d / 2 for a, d in ((arm[s], demo[s]) for s in SEEDS)]
    close = [a is not None and b is not None and abs(a - b) <= 20 for a, b in ((arm[s], dense[s]) for s in SEEDS)]
    fractions = [explained_fraction(demo[s], dense[s], set_net[s]) for s in SEEDS]
    further = [rho_300["protocol"][s] < rho_300["demo"][s] for s in SEEDS]
    text = ", ".join("none" if f is None else f"{f:.2f}" for f in fractions)
    return [
        Scored("1", "protocol crosses at most half as late as the demo", f"{_pairs(arm, demo)}", all(half)),
        Scored("2", "protocol + density within 20 epochs of protocol", f"{_pairs(dense, arm)}", all(close)),
        Scored(
            "3",
            "protocol + density explains ≥ 0.7 of the gap",
            f"fractions {text}",
            all(f is not None and f >= 0.7 for f in fractions),
        ),
        Scored(
            "4",
            "protocol's ρ at 300 below the demo's",
            f"{_pairs(rho_300['protocol'], rho_300['demo'], '{:+.3f}')}",
            all(further),
        ),
    ]


def _pairs(a: Mapping[int, object], b: Mapping[int, object], form: str = "{}") -> str:
    """``"41 against 152, 38 against 156"``: seed by seed."""
    return ", ".join(f"{form.format(a[s])} against {form.format(b[s])}" for s in SEEDS)
