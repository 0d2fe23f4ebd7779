"""Fitting the forecast's three constants on named committed runs.

    python -m synapses_study.forecast.fit          # fit, write forecast_constants.json
    python -m synapses_study.forecast.fit --check  # the committed constants' fit, printed

The fitting runs are :data:`FITTING_RUNS`: one entry per condition, the committed runs with
pruning recorded (so rho is read on survivors), averaged over their seeds, over their first
:data:`FIT_EPOCHS` epochs. The constants minimise the mean squared difference between the
simulated and the observed rho at every tenth epoch, over all conditions, with one
simulation stream (common random numbers, so that the objective is smooth enough for
Nelder-Mead in the logarithms of the constants).

The tolerances are the spread among the committed replicate runs of one condition
(:data:`REPLICATE_RUNS`, scaled inputs without decay, three runs): half the range of their
crossing epochs and of their rho at epoch 400, added to each side of the simulated range.
They were fixed before any forecast was scored; three runs understate the spread between
replicates, so the intervals are narrow and a miss by a few epochs is a miss.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict

import numpy as np
from scipy.optimize import minimize

from ..measures.survivors import crossing_epoch
from ..mechanism.account import survivors_of
from ..runs.run_dir import RunDir
from ..runs.run_files import write_atomic
from ..setup.config import ExperimentConfig
from ..setup.paths import RESULTS
from .model import CONSTANTS_FILE, Constants, PixelStatistics, pixel_statistics, simulate

FIT_EPOCHS = 400
SCORED_EVERY = 10
# Condition -> the committed run folders it is fitted on (every seed recorded with pruning).
FITTING_RUNS: dict[str, tuple[str, ...]] = {
    "scaled": ("sparsenet_e1000_wd0_scaled_rec_s0_ac7f637a", "sparsenet_e1000_wd0_scaled_rec_s1_d88ab903"),
    "standardized": ("sparsenet_e1000_wd0_rec_s0_98729f7a", "sparsenet_e1000_wd0_rec_s1_11959e41"),
    "unit": (
        "sparsenet_e1000_wd0_unit_rec_s0_395d2d16",
        "sparsenet_e1000_wd0_unit_rec_s1_d66277d0",
        "sparsenet_e1000_wd0_unit_rec_s2_94a09a08",
    ),
    "newborns 0.05": ("sparsenet_e400_wd0_regrow0.05_rec_s0_45ab31b1", "sparsenet_e400_wd0_regrow0.05_rec_s1_92bc69c7"),
    "newborns 0.1": ("sparsenet_e400_wd0_regrow0.1_rec_s0_914cd9ae", "sparsenet_e400_wd0_regrow0.1_rec_s1_ff169f00"),
    "fast first layer, unit": (
        "sparsenet_e400_wd0_unit_lr1x10.5_rec_s0_ff8339e3",
        "sparsenet_e400_wd0_unit_lr1x10.5_rec_s1_05f706dd",
    ),
    "slow first layer, scaled": (
        "sparsenet_e400_wd0_scaled_lr1x0.0949_rec_s0_ee65da8c",
        "sparsenet_e400_wd0_scaled_lr1x0.0949_rec_s1_7db1da38",
    ),
    "L2 1e-3": ("sparsenet_e1000_wd0.001_rec_s0_7a777222", "sparsenet_e1000_wd0.001_rec_s1_0e082289"),
    "L2 1e-2": ("sparsenet_e1000_wd0.01_rec_s0_64f0d266", "sparsenet_e1000_wd0.01_rec_s1_39b133bc"),
}
# Runs of one condition (scaled inputs, no decay) whose crossing epochs give the tolerance.
REPLICATE_RUNS = (
    "sparsenet_e1000_wd0_scaled_rec_s0_ac7f637a",
    "sparsenet_e1000_wd0_scaled_rec_s1_d88ab903",
    "sparsenet_e400_wd0_scaled_rec_life_s0_96d23c09",
)
START = Constants(rate=2e-3, slowdown_epochs=50.0, learned_spread=5.0)


def observed(condition: str) -> tuple[ExperimentConfig, np.ndarray]:
    """A fitting condition's config (its first run's, ``FIT_EPOCHS`` long) and its seeds'
    mean rho on survivors ``(FIT_EPOCHS,)``."""
    runs = [RunDir(RESULTS / name) for name in FITTING_RUNS[condition]]
    config = runs[0].verified_config().replace(epochs=FIT_EPOCHS)
    rho = np.mean([survivors_of(run.path).rho[:FIT_EPOCHS] for run in runs], axis=0)
    return config, rho


def objective(log_constants: np.ndarray, targets: list[tuple[ExperimentConfig, np.ndarray, PixelStatistics]]) -> float:
    """Mean squared rho error at every ``SCORED_EVERY``-th epoch, over the conditions."""
    rate, slowdown, spread = (float(math.exp(v)) for v in log_constants)
    constants = Constants(rate, slowdown, spread)
    errors = []
    for config, rho, stats in targets:
        simulated = simulate(config, constants, seed=0, stats=stats).rho
        errors.append(((simulated - rho)[SCORED_EVERY - 1 :: SCORED_EVERY] ** 2).mean())
    return float(np.mean(errors))


def replicate_tolerances() -> tuple[float, float]:
    """Half the range of the replicate runs' crossing epochs and of their rho at epoch
    ``FIT_EPOCHS`` (the mean of its last 10 epochs), see the module's docstring."""
    rhos = [survivors_of(RESULTS / name).rho[:FIT_EPOCHS] for name in REPLICATE_RUNS]
    crossings = [crossing_epoch(rho) for rho in rhos]
    found = [c for c in crossings if c is not None]
    if len(found) < 2:
        raise RuntimeError(f"the replicate runs cross at {crossings}: too few crossings for a tolerance")
    ends = [float(rho[-10:].mean()) for rho in rhos]
    return (max(found) - min(found)) / 2, (max(ends) - min(ends)) / 2


def fit(max_evaluations: int = 60) -> tuple[Constants, float]:
    """The fitted constants and their objective (progress on stderr: it takes minutes)."""
    targets = []
    for condition in FITTING_RUNS:
        config, rho = observed(condition)
        targets.append((config, rho, pixel_statistics(config)))
    start = np.log([START.rate, START.slowdown_epochs, START.learned_spread])
    evaluations = 0

    def traced(x: np.ndarray) -> float:
        nonlocal evaluations
        evaluations += 1
        value = objective(x, targets)
        print(f"  evaluation {evaluations}: {np.exp(x).round(5).tolist()} -> {value:.5f}", file=sys.stderr)
        return value

    result = minimize(traced, start, method="Nelder-Mead", options={"maxfev": max_evaluations, "xatol": 0.02})
    rate, slowdown, spread = (float(math.exp(v)) for v in result.x)
    constants = Constants(
        rate, slowdown, spread, tuple(name for runs in FITTING_RUNS.values() for name in runs), *replicate_tolerances()
    )
    return constants, float(result.fun)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synapses_study.forecast.fit", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="print the committed constants' fit instead of fitting")
    parser.add_argument("--evaluations", type=int, default=60, help="Nelder-Mead's budget of simulations")
    args = parser.parse_args(argv)
    if args.check:
        constants = Constants.load()
        for condition in FITTING_RUNS:
            config, rho = observed(condition)
            simulated = simulate(config, constants).rho
            print(
                f"{condition:26s} rho@100 {rho[99]:+.3f} sim {simulated[99]:+.3f}   rho@400 {rho[-1]:+.3f} sim "
                f"{simulated[-1]:+.3f}   crossing {crossing_epoch(rho)} sim {crossing_epoch(simulated)}"
            )
        return 0
    print(f"fitting the forecast on {len(FITTING_RUNS)} conditions (minutes)", file=sys.stderr)
    constants, value = fit(args.evaluations)
    record = asdict(constants) | {"objective": value, "fit_epochs": FIT_EPOCHS, "scored_every": SCORED_EVERY}
    write_atomic(CONSTANTS_FILE, (json.dumps(record, indent=2) + "\n").encode())
    print(f"wrote {CONSTANTS_FILE} (mean squared rho error {value:.4f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
