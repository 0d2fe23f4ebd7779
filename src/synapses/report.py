"""Tables of the write-up, regenerated from the committed results.

A markdown file marks each generated table with a pair of comments::

    <!-- table: sweep155 -->
    ... (rewritten by this module) ...
    <!-- /table -->

where the name is a sweep file in ``configs/``. The table gives, for each configuration of
the sweep (seeds pooled), mean ± standard deviation across seeds of the last-epoch numbers,
the Spearman correlation of connections with ink (``ink ρ``), and the peak of
``center_ratio`` with the epoch where it peaked.

    python -m synapses.report regularization.md           # rewrite the tables
    python -m synapses.report regularization.md --check   # exit 1 if any table is stale
"""
from __future__ import annotations

import argparse
import functools
import re
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

from .analysis import ink_correlation, ink_frequency
from .config import ExperimentConfig
from .engine import DEFAULT_RESULTS, is_finished
from .results import load_metrics, load_topology
from .sweep import load_sweep

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MARKER = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.DOTALL)
# (summary key, title, decimals, scale)
COLUMNS = (
    ("train_loss", "train loss", 4, 1),
    ("train_acc", "train acc (%)", 2, 100),
    ("test_loss", "test loss", 4, 1),
    ("test_acc", "test acc (%)", 2, 100),
    ("center_ratio", "center_ratio", 3, 1),
    ("ink_rho", "ink ρ", 3, 1),
    ("peak_center_ratio", "peak center_ratio", 3, 1),
    ("peak_epoch", "at epoch", 0, 1),
)


@functools.lru_cache(maxsize=1)
def _ink() -> np.ndarray:
    from .data import load_mnist

    return ink_frequency(load_mnist().train_x)


def run_summary(run_dir: Path) -> dict[str, float]:
    """Last-epoch metrics of a finished run, its Spearman correlation of connections with
    ink at the last epoch, and the peak of ``center_ratio`` with its epoch."""
    metrics = load_metrics(run_dir)
    last = metrics.iloc[-1]
    peak = int(metrics["center_ratio"].to_numpy().argmax())
    summary = {key: float(last[key]) for key in ("train_loss", "train_acc", "test_loss", "test_acc", "center_ratio")}
    summary["ink_rho"] = ink_correlation(load_topology(run_dir)[-1], _ink())
    summary["peak_center_ratio"] = float(metrics["center_ratio"].iloc[peak])
    summary["peak_epoch"] = float(metrics["epoch"].iloc[peak])
    return summary


def _label(config: ExperimentConfig, varying: list[str]) -> str:
    return ", ".join(f"{name}={getattr(config, name)}" for name in varying) or "all"


def sweep_table(name: str, results_dir: str | Path | None = None, configs_dir: str | Path | None = None) -> str:
    """Markdown table, one row per configuration of ``configs/<name>.yaml`` (seeds pooled):
    the :func:`run_summary` values as mean ± standard deviation over the finished seeds."""
    sweep = load_sweep(Path(configs_dir or CONFIGS) / f"{name}.yaml")
    configs = [run.config for run in sweep.runs]
    root = Path(results_dir) if results_dir is not None else DEFAULT_RESULTS
    varying = [f.name for f in fields(ExperimentConfig) if f.name not in ("seed", "init_from") and len({getattr(c, f.name) for c in configs}) > 1]
    header = ["configuration", "epochs", "seeds done", *[title for _, title, _, _ in COLUMNS]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups: dict[str, list[ExperimentConfig]] = {}
    for config in configs:
        groups.setdefault(_label(config, varying), []).append(config)
    for label, members in groups.items():
        summaries = [run_summary(root / c.run_id()) for c in members if is_finished(root / c.run_id(), c)]
        cells = [label, str(members[0].epochs), f"{len(summaries)} of {len(members)}"]
        for key, _, digits, scale in COLUMNS:
            cells.append(_mean_std(np.array([s[key] for s in summaries]) * scale, digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean_std(values: np.ndarray, digits: int) -> str:
    if len(values) == 0:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def refresh(text: str, results_dir: str | Path | None = None, configs_dir: str | Path | None = None) -> str:
    """``text`` with every marked table regenerated."""
    return MARKER.sub(lambda m: m.group(1) + sweep_table(m.group("name"), results_dir, configs_dir) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synapses.report", description="Regenerate the marked tables of a markdown file from results/.")
    parser.add_argument("markdown", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs from the results")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    text = args.markdown.read_text()
    fresh = refresh(text, args.results_dir)
    if args.check:
        stale = [m.group("name") for m, n in zip(MARKER.finditer(text), MARKER.finditer(fresh)) if m.group("body") != n.group("body")]
        if stale:
            print(f"{args.markdown}: stale table(s): {', '.join(stale)} (run python -m synapses.report {args.markdown})")
            return 1
        print(f"{args.markdown}: {len(list(MARKER.finditer(text)))} table(s) match the results")
        return 0
    args.markdown.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
