"""What pinning the rounding costs: the demo net's epoch time pinned against the
processor's own paths, measured side by side.

    python -m synapses_study.bench.pinning_cost --epochs 3 --repeats 3

Each repeat trains the demo net (standardised inputs, pruning recorded) for ``--epochs``
epochs twice, once with ``SYNAPSES_ROUNDING=pinned`` and once with ``fastest``, in fresh
processes (the settings act only before torch starts), alternating which goes first; the
result is the median epoch time of each and their ratio. Epochs after the first count
(the first pays for loading). On a busy machine both modes share the load alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ..runs.run_dir import read_metric_rows
from ..training.rounding import MODE_VARIABLE, PINNED_ENV


def epoch_seconds(mode: str, epochs: int, results: Path) -> list[float]:
    """Epoch times (seconds) of one fresh run under rounding ``mode``, first epoch dropped."""
    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENV} | {MODE_VARIABLE: mode}
    command = [sys.executable, "-m", "synapses_study.training.run", "--epochs", str(epochs), "--record-pruning", "true"]
    done = subprocess.run(
        [*command, "--results-dir", str(results), "--no-progress"], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} run failed: {done.stderr.strip().splitlines()[-1:]}")
    (folder,) = [p for p in results.iterdir() if p.is_dir()]
    metrics = next(folder.glob("metrics.csv*"))
    return [row["seconds"] for row in read_metric_rows(metrics)][1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m synapses_study.bench.pinning_cost", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3; the first is not counted)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (default 3)")
    args = parser.parse_args(argv)
    if args.epochs < 2 or args.repeats < 1:
        print("error: --epochs must be at least 2 and --repeats at least 1", file=sys.stderr)
        return 2
    times: dict[str, list[float]] = {"pinned": [], "fastest": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            order = ("pinned", "fastest") if repeat % 2 == 0 else ("fastest", "pinned")
            for mode in order:
                print(f"repeat {repeat + 1} of {args.repeats}: {mode} ({args.epochs} epochs)", file=sys.stderr)
                times[mode] += epoch_seconds(mode, args.epochs, Path(scratch) / f"{mode}{repeat}")
    pinned, fastest = statistics.median(times["pinned"]), statistics.median(times["fastest"])
    print(f"demo net epoch, median of {len(times['pinned'])}: pinned {pinned:.3f} s, fastest {fastest:.3f} s")
    print(f"pinned / fastest: {pinned / fastest:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
