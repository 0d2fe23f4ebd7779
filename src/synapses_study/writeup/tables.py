"""The write-up's tables, as markdown, from the committed results.

A table's name is a sweep file in ``configs/``, optionally narrowed to one of its entries,
several of them joined by ``+``, and optionally followed by a view
(``sweep155:overfitting``, ``evolnet_triplet/phase3:overfitting``,
``sweep155+reproduction:topology``). The default view gives, for each configuration
(seeds pooled), mean ± standard deviation across seeds of the last-epoch numbers, the
first layer's ``center_ratio`` and Spearman correlation with ink (``ink ρ``) read on the
connections the last pruning kept (survivors), and the peak of the recorded
``center_ratio`` with the epoch where it peaked. The ``overfitting`` view gives where the
(smoothed) test loss bottomed out and how test accuracy moved after it; the ``errors`` view
how much of the final test loss the misclassified images carry; the ``topology`` view
whether each configuration ends with a positive, negative or no topology, seed by seed; the
``drift`` view the recorded ink ρ (the pruned connections included: most runs did not
record their pruning per epoch) at a few epochs along the way (:data:`DRIFT_EPOCHS`), and
``survivors_drift`` the same on survivors for runs that did; the
``accuracy`` view the topology beside what it buys (last-epoch test loss and accuracy);
the ``pruning`` and ``pruning_never_inked`` views, for runs recorded with ``record_pruning``,
who got pruned after the last epoch: blank against inked pixels (blank: ink in fewer than
1% of the training images, or in none).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ..measures.analysis import TRAILING_WINDOW
from ..measures.survivors import BAND_NAMES
from ..mechanism.account import demography_summary
from ..reading.evaluation import errors_summary
from ..reading.metrics import (
    DRIFT_EPOCHS,
    drift_summary,
    outcome_summary,
    overfitting_summary,
    pruning_summary,
    run_summary,
)
from ..reading.selection import BUDGETS, CLASSIFIERS, RANK_EPOCHS, missing_scores
from ..reading.stats import Formatter, mean_std
from ..runs.run_dir import RunDir
from ..runs.run_files import DamagedFileError
from ..setup.config import ExperimentConfig
from ..setup.paths import CONFIGS, results_root
from ..setup.sweep_file import labelled_groups, load_sweep


def value_range(values: np.ndarray) -> str:
    """Cells as ``min to max`` of the values, three decimals (NaN, a run without the value,
    left out)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return "–" if len(values) == 0 else f"{np.min(values):.3f} to {np.max(values):.3f}"


def seed_values(spec: str, scale: float = 1.0, missing: str = "none") -> Formatter:
    """Cells listing each finished seed's value in seed order (``spec`` a format spec of
    ``scale`` times the value; NaN written as ``missing``): for runs of one or two seeds,
    where a mean and a deviation would say more than the runs do."""

    def format_cell(values: np.ndarray) -> str:
        cells = [missing if np.isnan(v) else format(v * scale, spec) for v in np.asarray(values, dtype=float)]
        return ", ".join(cells) if cells else "–"

    return format_cell


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
    ("peak_center_ratio", "recorded peak center_ratio", mean_std(3)),
    ("peak_epoch", "at epoch", mean_std(0)),
)


PRUNING_COLUMNS = (
    ("blank_pixels", "blank share of pixels", mean_std(3)),
    ("blank_share", "blank share of connections", mean_std(3)),
    ("pruned_blank", "pruned fraction, blank", mean_std(3)),
    ("pruned_inked", "pruned fraction, inked", mean_std(3)),
    ("weight_blank", "mean abs weight, blank", mean_std(3)),
    ("weight_inked", "mean abs weight, inked", mean_std(3)),
)


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
    "drift": (
        drift_summary,
        tuple((f"rho@{e}", f"recorded ink ρ, epochs {e - TRAILING_WINDOW + 1}-{e}", mean_std(3)) for e in DRIFT_EPOCHS),
    ),
    # the same on survivors, for runs that recorded their pruning (record_pruning)
    "survivors_drift": (
        partial(drift_summary, survivors=True),
        tuple(
            (f"rho@{e}", f"ink ρ on survivors, epochs {e - TRAILING_WINDOW + 1}-{e}", mean_std(3)) for e in DRIFT_EPOCHS
        ),
    ),
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
    # E2's births-and-deaths quantities, for runs with a lifetime record (record_lifetimes)
    "demography": (
        demography_summary,
        (
            ("survival_early", "newborn survival, epochs 51-100 (%)", seed_values(".1f", 100)),
            ("survival_late", "newborn survival, last 50 epochs (%)", seed_values(".1f", 100)),
            ("core_rare_survival", "core / rare newborn survival", seed_values(".2f")),
            *(
                (f"hazard_{band}", f"hazard after age 50, {band} (1e-3 per epoch)", seed_values(".2f", 1e3))
                for band in BAND_NAMES
            ),
            ("core_recruit_share", "core deaths that are recruits (%)", seed_values(".0f", 100)),
            ("crossing", "ρ below 0 from epoch", seed_values(".0f")),
            ("ink_rho", "ink ρ at the end", seed_values(".3f")),
        ),
    ),
}


class IncompleteResultsError(RuntimeError):
    """A table's runs are not all finished (and dropping seeds was not asked for)."""


def sweep_table(
    name: str,
    results_dir: str | Path | None = None,
    configs_dir: str | Path | None = None,
    *,
    allow_missing: bool = False,
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
    root = results_root(results_dir)
    groups: dict[str, list[ExperimentConfig]] = {}
    for target in targets.split("+"):
        sweep_name, _, entry = target.partition("/")
        sweep = load_sweep(Path(configs_dir or CONFIGS) / f"{sweep_name}.yaml")
        if entry and entry not in sweep.entries():
            raise ValueError(f"table {name!r}: no entry {entry!r} in {sweep_name}; known: {sorted(sweep.entries())}")
        for label, configs in labelled_groups(sweep, entry or None).items():
            if "+" in targets:  # say which sweep a row comes from, once
                label = target if label in (sweep_name, entry, "all") else f"{target}: {label}"
            groups.setdefault(label, []).extend(configs)
    why_not = {c.run_id(): RunDir(root / c.run_id()).problem(c) for members in groups.values() for c in members}
    for members in groups.values():  # damage is never pooled away, whatever allow_missing says
        for c in members:
            if RunDir(root / c.run_id()).state(c) == "damaged":
                raise DamagedFileError(
                    f"{root / c.run_id()}: {why_not[c.run_id()]}; delete the folder to rerun that run"
                )
    problems = [f"{run_id} ({why})" for run_id, why in why_not.items() if why]
    if problems and not allow_missing:
        raise IncompleteResultsError(
            f"table {name!r}: {len(problems)} run(s) missing or unfinished in {root}: {'; '.join(problems)} "
            "(finish them with python -m synapses_study.training.sweep, or pass --allow-missing to pool the finished "
            "seeds only)"
        )
    header = ["configuration", "epochs", "seeds done", *[title for _, title, _ in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, members in groups.items():
        summaries = [summarize(root / c.run_id()) for c in members if why_not[c.run_id()] is None]
        cells = [label, str(members[0].epochs), f"{len(summaries)} of {len(members)}"]
        cells += [format_cell(np.array([s[key] for s in summaries])) for key, _, format_cell in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def selection_table(
    path: Path, configs: list[ExperimentConfig] | None = None, rank_epochs: tuple[int, ...] | None = None
) -> str:
    """The feature-selection table (:mod:`synapses_study.reading.selection`) from its CSV: one row
    per ranking (and weight decay, for the learned ones), one column per pixel budget and
    classifier, test accuracy in % as mean ± sd over seeds (n in the row). It must hold
    every score of the rankings of ``configs`` after ``rank_epochs`` (default: the
    reproduction's, after the study's epochs)."""
    if not path.exists():
        raise IncompleteResultsError(
            f"table 'selection': no {path} (python -m synapses_study.reading.selection computes it)"
        )
    table = pd.read_csv(path)
    if missing := missing_scores(table, configs, rank_epochs or RANK_EPOCHS):
        raise IncompleteResultsError(
            f"table 'selection': {missing} score(s) missing from {path} "
            "(python -m synapses_study.reading.selection resumes it)"
        )
    table["configuration"] = [
        r if wd != wd else f"{r}, weight_decay={wd:g}" for r, wd in zip(table.ranking, table.weight_decay)
    ]
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
