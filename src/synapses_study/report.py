"""Tables of the write-up, regenerated from the committed results.

A markdown file marks each generated table with a pair of comments::

    <!-- table: sweep155 -->
    ... (rewritten by this module) ...
    <!-- /table -->

where the name is a sweep file in ``configs/``, optionally narrowed to one of its entries,
several of them joined by ``+``, and optionally followed by a view
(``sweep155:overfitting``, ``evolnet_triplet/phase3:overfitting``,
``sweep155+reproduction:topology``). The default view gives, for each configuration
(seeds pooled), mean ± standard deviation across seeds of the last-epoch numbers, the
Spearman correlation of connections with ink (``ink ρ``), and the peak of
``center_ratio`` with the epoch where it peaked. The ``overfitting`` view gives where the
(smoothed) test loss bottomed out and how test accuracy moved after it; the ``errors`` view
how much of the final test loss the misclassified images carry; the ``topology`` view
whether each configuration ends with a positive, negative or no topology, seed by seed; the
``drift`` view the ink ρ at a few epochs along the way (:data:`DRIFT_EPOCHS`); the
``accuracy`` view the topology beside what it buys (last-epoch test loss and accuracy); the ``pruning`` and ``pruning_never_inked`` views, for runs recorded with ``record_pruning``,
who got pruned after the last epoch: blank against inked pixels (blank: ink in fewer than
1% of the training images, or in none).

    python -m synapses_study.report regularization.md           # rewrite the tables
    python -m synapses_study.report regularization.md --check   # exit 1 if any table is stale
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .analysis import ink_correlation, loss_breakdown, pruning_by_region
from .build import load_trained_model
from .config import ExperimentConfig
from .data import prepare_data
from .markers import parse_markers, replace_marked
from .paths import RESULTS
from .results import load_metrics, load_pruning, load_topology, mnist, training_ink
from .run_dir import RunDir
from .run_files import DamagedFileError, write_atomic
from .sweep_file import CONFIGS, load_sweep, run_labels

Formatter = Callable[[np.ndarray], str]  # one value per finished seed -> table cell

def mean_std(digits: int, scale: float = 1.0) -> Formatter:
    """Cells as ``mean ± standard deviation`` (sample, ddof=1) of ``scale`` times the values."""

    def format_cell(values: np.ndarray) -> str:
        values = np.asarray(values, dtype=float) * scale
        values = values[~np.isnan(values)]  # NaN: a seed without that value (a shorter run)
        if len(values) == 0:
            return "–"
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"

    return format_cell


def value_range(values: np.ndarray) -> str:
    """Cells as ``min to max`` of the values, three decimals (NaN, a run without the value,
    left out)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return "–" if len(values) == 0 else f"{np.min(values):.3f} to {np.max(values):.3f}"


NO_TOPOLOGY = 0.1  # |ink ρ| below this: no topology
STRONG_TOPOLOGY = 0.4  # |ink ρ| at least this in every seed: strongly positive or negative


def topology_verdict(rhos: np.ndarray) -> str:
    """Positive, negative or no topology, from each seed's ink ρ: ``none`` when
    ``|ρ| < NO_TOPOLOGY``, ``strongly`` when ``|ρ| >= STRONG_TOPOLOGY`` in every seed; the
    seeds are counted when they disagree (``"2 none, 1 positive"``). NaN (a network without
    a sparse first layer) has no verdict."""
    rhos = np.asarray(rhos, dtype=float)
    rhos = rhos[~np.isnan(rhos)]
    if len(rhos) == 0:
        return "–"
    kinds = ["none" if abs(r) < NO_TOPOLOGY else "positive" if r > 0 else "negative" for r in rhos]
    if len(set(kinds)) > 1:
        return ", ".join(f"{kinds.count(k)} {k}" for k in ("negative", "none", "positive") if k in kinds)
    strongly = kinds[0] != "none" and all(abs(r) >= STRONG_TOPOLOGY for r in rhos)
    return f"strongly {kinds[0]}" if strongly else kinds[0]


# (summary key, title, formatter)
COLUMNS = (
    ("train_loss", "train loss", mean_std(4)),
    ("train_acc", "train acc (%)", mean_std(2, 100)),
    ("test_loss", "test loss", mean_std(4)),
    ("test_acc", "test acc (%)", mean_std(2, 100)),
    ("center_ratio", "center_ratio", mean_std(3)),
    ("ink_rho", "ink ρ", mean_std(3)),
    ("peak_center_ratio", "peak center_ratio", mean_std(3)),
    ("peak_epoch", "at epoch", mean_std(0)),
)


def run_summary(run_dir: Path) -> dict[str, float]:
    """Last-epoch metrics of a finished run, its Spearman correlation of connections with
    ink at the last epoch, and the peak of ``center_ratio`` with its epoch."""
    metrics = load_metrics(run_dir)
    last = metrics.iloc[-1]
    peak = int(metrics["center_ratio"].to_numpy().argmax())
    summary = {key: float(last[key]) for key in ("train_loss", "train_acc", "test_loss", "test_acc", "center_ratio")}
    summary["ink_rho"] = float(ink_correlation(load_topology(run_dir)[-1], training_ink()))
    summary["peak_center_ratio"] = float(metrics["center_ratio"].iloc[peak])
    summary["peak_epoch"] = float(metrics["epoch"].iloc[peak])
    return summary


SMOOTHING = 25  # epochs: test metrics move by more than their trend from one epoch to the next


def overfitting_summary(run_dir: Path, window: int = SMOOTHING) -> dict[str, float]:
    """Where a run's test loss bottomed out and what test accuracy did after it, on
    centred ``window``-epoch moving averages (the whole run if it is shorter): the minimum
    smoothed test loss and its epoch, the smoothed test accuracy there, both at the end
    (the last epoch with a full window), the change in accuracy between the two, and the
    highest smoothed test accuracy with its epoch."""
    metrics = load_metrics(run_dir)
    window = min(window, len(metrics))
    smooth = metrics[["test_loss", "test_acc"]].rolling(window, center=True).mean()
    smooth["epoch"] = metrics["epoch"]
    smooth = smooth.dropna()
    best, end = smooth.iloc[int(np.argmin(smooth["test_loss"].to_numpy()))], smooth.iloc[-1]
    peak = smooth.iloc[int(np.argmax(smooth["test_acc"].to_numpy()))]
    return {
        "min_test_loss": float(best["test_loss"]),
        "min_epoch": float(best["epoch"]),
        "acc_at_min": float(best["test_acc"]),
        "test_loss": float(end["test_loss"]),
        "test_acc": float(end["test_acc"]),
        "acc_gain": float(end["test_acc"] - best["test_acc"]),
        "max_acc": float(peak["test_acc"]),
        "max_acc_epoch": float(peak["epoch"]),
    }


def outcome_summary(run_dir: Path) -> dict[str, float]:
    """:func:`run_summary` (last-epoch values) with the smoothed test accuracy's peak of
    :func:`overfitting_summary`."""
    smoothed = overfitting_summary(run_dir)
    return {**run_summary(run_dir), "max_acc": smoothed["max_acc"], "max_acc_epoch": smoothed["max_acc_epoch"]}


DRIFT_EPOCHS = (50, 155, 300, 500, 700, 1000)
# Per-epoch values move by about 0.02 from one epoch to the next, so views that quote a
# point in training average the WINDOW epochs ending there (chosen after a single-epoch
# reading was found to flip a comparison; the window was not tuned).
WINDOW = 20


def drift_summary(run_dir: Path, epochs: tuple[int, ...] = DRIFT_EPOCHS) -> dict[str, float]:
    """A run's Spearman correlation of connections with ink, averaged over the
    :data:`WINDOW` epochs ending at each of ``epochs`` (keys ``"rho@<epoch>"``; fewer near
    the start), NaN for epochs past its end."""
    topology = load_topology(run_dir)  # (epochs + 1, 784): row e after epoch e
    rho = np.asarray(ink_correlation(topology, training_ink()))
    return {f"rho@{e}": float(np.mean(rho[max(0, e - WINDOW + 1) : e + 1])) if e < len(topology) else float("nan") for e in epochs}


def pruning_summary(run_dir: Path, blank_below: float = 0.01) -> dict[str, float]:
    """:func:`synapses_study.analysis.pruning_by_region` of a recorded run over its last
    :data:`WINDOW` epochs (means): the blank pixels' share of the connections, and per
    region the fraction of its connections pruned and their mean ``|weight|`` just before
    pruning; with the blank pixels' share of all pixels, the share of connections uniform
    placement would give."""
    ink = training_ink()
    regions = pruning_by_region(*load_pruning(run_dir), load_topology(run_dir), ink, blank_below=blank_below)
    window = regions[regions["epoch"] > regions["epoch"].max() - WINDOW]
    last = window.groupby("region")[["share_of_connections", "pruned_fraction", "mean_abs_weight"]].mean()
    summary = {"blank_pixels": float((ink < blank_below).mean()), "blank_share": float(last.loc["blank", "share_of_connections"])}
    for region in ("blank", "inked"):
        summary[f"pruned_{region}"] = float(last.loc[region, "pruned_fraction"])
        summary[f"weight_{region}"] = float(last.loc[region, "mean_abs_weight"])
    return summary


PRUNING_COLUMNS = (
    ("blank_pixels", "blank share of pixels", mean_std(3)),
    ("blank_share", "blank share of connections", mean_std(3)),
    ("pruned_blank", "pruned fraction, blank", mean_std(3)),
    ("pruned_inked", "pruned fraction, inked", mean_std(3)),
    ("weight_blank", "mean abs weight, blank", mean_std(3)),
    ("weight_inked", "mean abs weight, inked", mean_std(3)),
)


def errors_summary(run_dir: Path) -> dict[str, float]:
    """:func:`synapses_study.analysis.loss_breakdown` of a finished run's final network on its
    test images."""
    config = RunDir(run_dir).config()
    data = prepare_data(mnist(), config.train_size, config.test_size, config.inputs)
    with torch.no_grad():
        log_probs = load_trained_model(run_dir)(data.test_x)
    return loss_breakdown(log_probs, data.test_y)


# view name -> (summary of one run, its columns as (key, title, formatter))
VIEWS: dict[str, tuple[Callable[[Path], dict[str, float]], tuple[tuple[str, str, Formatter], ...]]] = {
    "summary": (run_summary, COLUMNS),
    "overfitting": (
        overfitting_summary,
        (
            ("min_test_loss", "min test loss", mean_std(4)),
            ("min_epoch", "at epoch", mean_std(0)),
            ("test_loss", "test loss at end", mean_std(4)),
            ("acc_at_min", "test acc at min (%)", mean_std(2, 100)),
            ("test_acc", "test acc at end (%)", mean_std(2, 100)),
            ("acc_gain", "change (points)", mean_std(2, 100)),
        ),
    ),
    "errors": (
        errors_summary,
        (
            ("loss", "test loss", mean_std(4)),
            ("errors", "errors (%)", mean_std(2, 100)),
            ("error_share", "loss share of errors (%)", mean_std(1, 100)),
            ("nll_wrong", "mean loss, errors", mean_std(2)),
            ("nll_right", "mean loss, correct", mean_std(4)),
            ("confidence_wrong", "confidence in errors (%)", mean_std(1, 100)),
        ),
    ),
    "accuracy": (
        run_summary,
        (
            ("ink_rho", "ink ρ", mean_std(3)),
            ("test_loss", "test loss", mean_std(4)),
            ("test_acc", "test acc (%)", mean_std(2, 100)),
        ),
    ),
    "outcome": (
        outcome_summary,
        (
            ("test_loss", "test loss", mean_std(4)),
            ("test_acc", "test acc (%)", mean_std(2, 100)),
            ("max_acc", "best test acc, smoothed (%)", mean_std(2, 100)),
            ("max_acc_epoch", "at epoch", mean_std(0)),
            ("ink_rho", "ink ρ, lowest to highest seed", value_range),
            ("ink_rho", "topology at the end", topology_verdict),
        ),
    ),
    "pruning": (pruning_summary, PRUNING_COLUMNS),
    "pruning_counts": (pruning_summary, PRUNING_COLUMNS[:4]),  # runs without record_weight_mass
    "pruning_never_inked": (partial(pruning_summary, blank_below=1e-6), PRUNING_COLUMNS),
    "drift": (drift_summary, tuple((f"rho@{e}", f"ink ρ, epochs {e - WINDOW + 1}-{e}", mean_std(3)) for e in DRIFT_EPOCHS)),
    "verdict": (
        run_summary,
        (
            ("ink_rho", "ink ρ, lowest to highest seed", value_range),
            ("ink_rho", "topology at the end", topology_verdict),
        ),
    ),
    "topology": (
        run_summary,
        (
            ("center_ratio", "center_ratio", mean_std(3)),
            ("ink_rho", "ink ρ", mean_std(3)),
            ("ink_rho", "ink ρ, lowest to highest seed", value_range),
            ("ink_rho", "topology at the end", topology_verdict),
        ),
    ),
}


class IncompleteResultsError(RuntimeError):
    """A table's runs are not all finished (and dropping seeds was not asked for)."""


def sweep_table(
    name: str, results_dir: str | Path | None = None, configs_dir: str | Path | None = None, *, allow_missing: bool = False
) -> str:
    """Markdown table, one row per configuration (seeds pooled), where ``name`` is
    ``<sweeps>[:<view>]`` and ``<sweeps>`` one or more ``<sweep>[/<entry>]`` joined by
    ``+``: the runs of ``configs/<sweep>.yaml``, of one of its entries only if given, in a
    view of :data:`VIEWS` (default ``summary``). Each column formats the values of the
    finished seeds; rows of a table over several sweeps start with the sweep's name.

    Raises:
        IncompleteResultsError: naming each missing or unfinished run, unless
            ``allow_missing`` (the table then pools the finished seeds, "2 of 3").
    """
    targets, _, view = name.partition(":")
    if (view or "summary") not in VIEWS:
        raise ValueError(f"table {name!r}: unknown view {view!r}; known: {sorted(VIEWS)}")
    summarize, columns = VIEWS[view or "summary"]
    root = Path(results_dir) if results_dir is not None else RESULTS
    groups: dict[str, list[ExperimentConfig]] = {}
    for target in targets.split("+"):
        sweep_name, _, entry = target.partition("/")
        sweep = load_sweep(Path(configs_dir or CONFIGS) / f"{sweep_name}.yaml")
        labels = run_labels(sweep)
        if entry:
            entries = sorted({run.entry for run in sweep.runs})
            if entry not in entries:
                raise ValueError(f"table {name!r}: no entry {entry!r} in {sweep_name}; known: {entries}")
        for run in sweep.runs:
            if not entry or run.entry == entry:
                label = labels[run.config.run_id()]
                if "+" in targets:  # say which sweep a row comes from, once
                    label = target if label in (sweep_name, entry, "all") else f"{target}: {label}"
                groups.setdefault(label, []).append(run.config)
    why_not = {c.run_id(): RunDir(root / c.run_id()).problem(c) for members in groups.values() for c in members}
    for members in groups.values():  # damage is never pooled away, whatever allow_missing says
        for c in members:
            if RunDir(root / c.run_id()).state(c) == "damaged":
                raise DamagedFileError(f"{root / c.run_id()}: {why_not[c.run_id()]}; delete the folder to rerun that run")
    problems = [f"{run_id} ({why})" for run_id, why in why_not.items() if why]
    if problems and not allow_missing:
        raise IncompleteResultsError(
            f"table {name!r}: {len(problems)} run(s) missing or unfinished in {root}: {'; '.join(problems)} "
            "(finish them with python -m synapses_study.sweep, or pass --allow-missing to pool the finished seeds only)"
        )
    header = ["configuration", "epochs", "seeds done", *[title for _, title, _ in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, members in groups.items():
        summaries = [summarize(root / c.run_id()) for c in members if why_not[c.run_id()] is None]
        cells = [label, str(members[0].epochs), f"{len(summaries)} of {len(members)}"]
        cells += [format_cell(np.array([s[key] for s in summaries])) for key, _, format_cell in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def selection_table(path: Path, configs: list[ExperimentConfig] | None = None, rank_epochs: tuple[int, ...] | None = None) -> str:
    """The feature-selection table (:mod:`synapses_study.selection`) from its CSV: one row
    per ranking (and weight decay, for the learned ones), one column per pixel budget and
    classifier, test accuracy in % as mean ± sd over seeds (n in the row). It must hold
    every score of the rankings of ``configs`` after ``rank_epochs`` (default: the
    reproduction's, after the study's epochs)."""
    import pandas as pd

    from .selection import BUDGETS, CLASSIFIERS, RANK_EPOCHS, missing_scores

    if not path.exists():
        raise IncompleteResultsError(f"table 'selection': no {path} (python -m synapses_study.selection computes it)")
    table = pd.read_csv(path)
    if missing := missing_scores(table, configs, rank_epochs or RANK_EPOCHS):
        raise IncompleteResultsError(f"table 'selection': {missing} score(s) missing from {path} (python -m synapses_study.selection resumes it)")
    table["configuration"] = [r if wd != wd else f"{r}, weight_decay={wd:g}" for r, wd in zip(table.ranking, table.weight_decay)]
    header = ["ranking", "seeds", *[f"{c.replace('_', ' ')}, K={k} (%)" for k in BUDGETS for c in CLASSIFIERS]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, rows in table.groupby("configuration", sort=False):
        cells = [str(name), str(rows.seed.nunique())]
        for k in BUDGETS:
            for classifier in CLASSIFIERS:
                values = rows[(rows.k == k) & (rows.classifier == classifier)].test_acc.to_numpy()
                cells.append(mean_std(2, 100)(values) if len(values) else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def refresh(
    text: str, results_dir: str | Path | None = None, configs_dir: str | Path | None = None, *, allow_missing: bool = False, where: str = "the write-up"
) -> str:
    """``text`` with every marked table and value regenerated (see :func:`sweep_table`
    and :mod:`.markers`); the markers are parsed strictly first.

    Raises:
        MarkerError: a marker that is unclosed, unopened, nested or mistyped.
    """
    spans = parse_markers(text, where)
    tables: dict[str, str] = {}

    def table(name: str) -> str:
        if name not in tables:
            root = Path(results_dir) if results_dir is not None else RESULTS
            if name == "selection":
                tables[name] = selection_table(root / "feature_selection.csv")
            elif name in ("mechanism", "mechanism:final"):  # docs/mechanism_predictions.md scored; the end of runs on survivors
                from .mechanism import final_survivor_table, prediction_table

                tables[name] = prediction_table(root) if name == "mechanism" else final_survivor_table(root)
            elif name == "protocol":  # docs/protocol_predictions.md scored
                from .protocol import protocol_table

                tables[name] = protocol_table(root)
            else:
                tables[name] = sweep_table(name, results_dir=results_dir, configs_dir=configs_dir, allow_missing=allow_missing)
        return tables[name]

    def value(name: str) -> str:
        if name.startswith("fact:"):
            from .facts import fact

            return fact(name.removeprefix("fact:"), Path(results_dir) if results_dir is not None else RESULTS)
        parts = [part.strip() for part in name.split("|")]
        if len(parts) != 3:
            raise ValueError(f"value {name!r}: expected 'TABLE | ROW | COLUMN' or 'fact:NAME'")
        return table_cell(table(parts[0]), parts[1], parts[2], where=name)

    return replace_marked(text, spans, [table(s.name) if s.kind == "table" else value(s.name) for s in spans])


def table_cell(markdown: str, row: str, column: str, where: str = "") -> str:
    """The cell of ``markdown`` (a table of :func:`sweep_table`) in the row whose first
    cell is ``row`` and the column titled ``column``."""
    lines = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in markdown.splitlines() if line.startswith("|")]
    header, rows = lines[0], {cells[0]: cells for cells in lines[2:]}
    if column not in header:
        raise ValueError(f"value {where!r}: no column {column!r}; columns: {header}")
    if row not in rows:
        raise ValueError(f"value {where!r}: no row {row!r}; rows: {sorted(rows)}")
    return rows[row][header.index(column)]


def stale_markers(text: str, fresh: str) -> list[str]:
    """Names of the tables and values of ``text`` that differ in ``fresh``."""
    old, new = parse_markers(text), parse_markers(fresh)
    return [a.name for a, b in zip(old, new) if text[a.body_start : a.body_end] != fresh[b.body_start : b.body_end]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synapses_study.report", description="Regenerate the marked tables of a markdown file from results/.")
    parser.add_argument("markdown", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs from the results")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--allow-missing", action="store_true", help="pool the finished seeds of tables whose runs are not all there")
    args = parser.parse_args(argv)
    try:
        text = args.markdown.read_text()
        fresh = refresh(text, args.results_dir, allow_missing=args.allow_missing, where=str(args.markdown))
    except (OSError, UnicodeDecodeError, IncompleteResultsError, DamagedFileError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    if args.check:
        stale = stale_markers(text, fresh)
        if stale:
            print(f"{args.markdown}: stale table(s) or value(s): {', '.join(stale)} (run python -m synapses_study.report {args.markdown})")
            return 1
        kinds = [span.kind for span in parse_markers(text)]
        print(f"{args.markdown}: {kinds.count('table')} table(s) and {kinds.count('value')} value(s) match the results")
        return 0
    try:
        write_atomic(args.markdown, fresh.encode())  # a full disk leaves the old text, never half of it
    except OSError as err:
        parser.exit(2, f"error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
