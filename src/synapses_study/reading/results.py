"""Reading finished runs back: tidy pandas tables for the notebooks.

``load_runs`` gives one row per (run, epoch) with the run's config fields as columns, the
form seaborn and ``groupby`` want. Topologies (per-pixel counts per epoch) are arrays and
come from :meth:`RunDir.topology <synapses_study.runs.run_dir.RunDir.topology>`.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..measures.analysis import BLANK_BELOW, TRAILING_WINDOW, ink_correlation, ink_frequency, pruning_by_region
from ..measures.survivors import final_survivors, survivor_counts
from ..measures.topology import center_ratio
from ..runs.run_dir import METRIC_COLUMNS, RunDir
from ..runs.run_files import DamagedFileError, read_text
from ..setup.config import ExperimentConfig
from ..setup.data import load_mnist
from ..setup.paths import results_root
from ..setup.sweep_file import CONFIGS, Sweep, labelled_groups, load_sweep, matching, run_labels

CONFIG_COLUMNS = (
    "run_id",
    "model",
    "seed",
    "weight_decay",
    "weight_decay_end",
    "decay_mode",
    "l1",
    "regrowth",
    "optimizer",
    "evolution",
    "evolution_proba",
    "epochs",
)


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """``metrics.csv`` of one run (:data:`~synapses_study.runs.run_dir.METRIC_COLUMNS`) with its
    config fields as leading columns (``weight_decay`` is the config's; the coefficient in
    force each epoch is the metric ``decay_in_force``)."""
    folder = RunDir(run_dir)
    metrics = pd.read_csv(io.StringIO(read_text(folder.metrics_file)))
    config = folder.verified_config() if folder.manifest_file.exists() else folder.config()
    fields = config.to_dict() | {"run_id": folder.path.name}
    for column in reversed(CONFIG_COLUMNS):
        metrics.insert(0, column, fields[column])
    return metrics


def load_runs(
    configs: Iterable[ExperimentConfig] | None = None,
    results_dir: str | Path | None = None,
    *,
    finished_only: bool = True,
) -> pd.DataFrame:
    """One row per (run, epoch): the runs of ``configs``, or every run in ``results_dir``.

    Runs that are missing (or unfinished, with ``finished_only``) are skipped.

    Raises:
        DamagedFileError: reading every run, a folder without ``config.json`` or one whose
            config is another run's (folders renamed or swapped); and any damaged run.
        ConfigError: a ``config.json`` that is not a readable config.
    """
    root = results_root(results_dir)
    if configs is None:
        pairs: list[tuple[ExperimentConfig, Path]] = []
        # every folder is a run (hidden ones, such as .sweep-logs, are not): none is skipped unread
        for found in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (found / "config.json").exists():
                raise DamagedFileError(f"{found} has no config.json: not a run folder; move it out of {root}")
            config = ExperimentConfig.from_json(found / "config.json")
            if config.run_id() != found.name:
                raise DamagedFileError(
                    f"{found} holds the config of run {config.run_id()}: the folder was renamed or swapped; give it "
                    "its run's name or delete it"
                )
            pairs.append((config, found))
    else:
        pairs = [(c, root / c.run_id()) for c in configs]
    frames = []
    for config, path in pairs:
        folder = RunDir(path)
        state = folder.state(config)
        if state == "damaged":  # a finished run whose files do not verify: never read, never skipped quietly
            raise DamagedFileError(f"{path}: {folder.problem(config)}; delete the folder to rerun that run")
        if state == "done" or (not finished_only and folder.metrics_file.exists()):
            frames.append(load_metrics(path))
    if not frames:
        return pd.DataFrame(columns=[*CONFIG_COLUMNS, *METRIC_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def load_sweep_runs(sweep: Sweep, results_dir: str | Path | None = None, *, finished_only: bool = True) -> pd.DataFrame:
    """:func:`load_runs` for the runs of a sweep, with three more columns: ``entry`` (the
    sweep file's entry), ``label`` (:func:`synapses_study.setup.sweep_file.run_labels`, seeds pooled) and
    ``chained_epoch``: the epoch counted from the start of the chain of ``after:`` runs, so
    that a run continuing another one is drawn after it on one axis."""
    labels = run_labels(sweep)
    by_id = {run.config.run_id(): run for run in sweep.runs}

    def offset(run_id: str) -> int:
        after = by_id[run_id].after
        return 0 if after is None else by_id[after].config.epochs + offset(after)

    runs = load_runs([run.config for run in sweep.runs], results_dir, finished_only=finished_only)
    runs["entry"] = runs["run_id"].map(lambda i: by_id[i].entry)
    runs["label"] = runs["run_id"].map(labels)
    runs["chained_epoch"] = runs["epoch"] + runs["run_id"].map(offset).astype(int)
    return runs


@functools.lru_cache(maxsize=1)
def mnist():
    """MNIST from :func:`synapses_study.setup.data.load_mnist`, loaded once per process."""
    return load_mnist()


@functools.lru_cache(maxsize=1)
def training_ink() -> np.ndarray:
    """``(784,)`` ink frequency of the MNIST training images (see
    :func:`synapses_study.measures.analysis.ink_frequency`), computed once per process."""
    return ink_frequency(mnist().train_x)


def load_ink_correlation(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """One row per (run, epoch) with ``ink_rho``: the Spearman correlation of the first
    layer's connections per pixel with the training ink frequency, epoch 0 at
    initialisation. Merge it into :func:`load_runs` on ``run_id`` and ``epoch``."""
    frames = []
    for run_dir in map(Path, run_dirs):
        rho = np.atleast_1d(ink_correlation(RunDir(run_dir).topology(), training_ink()))
        frames.append(pd.DataFrame({"run_id": run_dir.name, "epoch": np.arange(len(rho)), "ink_rho": rho}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id", "epoch", "ink_rho"])


def survivor_ink_correlation(run_dir: str | Path) -> pd.DataFrame:
    """:func:`load_ink_correlation` of one run, read on survivors (the connections each
    epoch's pruning kept); refuses a run that did not record its pruning."""
    folder = RunDir(Path(run_dir))
    if not folder.pruning_file.exists():
        raise ValueError(f"{folder.path} did not record its pruning (record_pruning), so its survivors cannot be read")
    topology = folder.topology()
    counts = np.vstack([topology[:1], survivor_counts(topology, folder.pruning()[0])])
    rho = np.asarray(ink_correlation(counts, training_ink()))
    return pd.DataFrame({"run_id": folder.path.name, "epoch": np.arange(len(rho)), "ink_rho": rho})


def with_ink_rho(runs: pd.DataFrame, results_dir: str | Path | None = None) -> pd.DataFrame:
    """``runs`` (from :func:`load_runs`) with the column ``ink_rho`` of
    :func:`load_ink_correlation` for each run and epoch."""
    root = results_root(results_dir)
    rho = load_ink_correlation(root / run_id for run_id in runs["run_id"].unique())
    return runs.merge(rho, on=["run_id", "epoch"], how="left")


def final_table(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Last-epoch metrics per configuration: mean and std across seeds, and the seed count."""
    last = runs[runs["epoch"] == runs.groupby("run_id")["epoch"].transform("max")]
    metrics = ["train_loss", "train_acc", "test_loss", "test_acc", "center_ratio"]
    table = last.groupby(by, dropna=False)[metrics].agg(["mean", "std"])
    table[("seeds", "")] = last.groupby(by, dropna=False)["seed"].nunique()
    return table


def format_final_table(
    table: pd.DataFrame,
    metrics: Iterable[str] = ("train_loss", "train_acc", "test_loss", "test_acc", "center_ratio"),
    digits: int = 4,
) -> pd.DataFrame:
    """:func:`final_table` as text for display: ``seeds`` and ``"mean ± std"`` per metric
    (std 0 for a single seed)."""
    columns: dict[str, Any] = {"seeds": table[("seeds", "")]}
    for m in metrics:
        columns[m] = [
            f"{a:.{digits}f} ± {b:.{digits}f}" for a, b in zip(table[(m, "mean")], table[(m, "std")].fillna(0))
        ]
    return pd.DataFrame(columns, index=table.index)


def select_runs(
    sweep: str, entry: str | None = None, overrides: dict | None = None, **fields: object
) -> list[ExperimentConfig]:
    """The configs of ``configs/<sweep>.yaml`` (one ``entry`` of it if given) whose fields
    equal ``fields``; ``overrides`` scales the file down as :func:`synapses_study.setup.sweep_file.load_sweep` does."""
    loaded = load_sweep(CONFIGS / f"{sweep}.yaml", override=overrides)
    return matching(loaded.only(entry) if entry is not None else loaded, **fields)


def configuration_runs(
    groups: dict[str, list[ExperimentConfig]], results_dir: str | Path | None = None, *, survivors: bool = False
) -> pd.DataFrame:
    """One row per (run, epoch) of labelled groups of finished runs: ``configuration`` (the
    group's label), ``seed``, ``epoch`` (0: initialisation), ``ink_rho``, ``center_ratio``,
    ``test_loss`` and ``test_acc`` (NaN at epoch 0). ``ink_rho`` reads the recorded topology,
    or with ``survivors`` the connections each epoch's pruning kept (every run must have
    recorded its pruning; epoch 0 is the initial network, which nothing has pruned yet)."""
    root = results_root(results_dir)
    frames = []
    for label, configs in groups.items():
        for config in configs:
            run_dir = RunDir.of(config, root).verified(config).path
            metrics = load_metrics(run_dir)[["epoch", "center_ratio", "test_loss", "test_acc"]]
            rho = survivor_ink_correlation(run_dir) if survivors else load_ink_correlation([run_dir])
            frames.append(rho.merge(metrics, on="epoch", how="left").assign(configuration=label, seed=config.seed))
    return pd.concat(frames, ignore_index=True)


def excess_pruning(
    groups: dict[str, list[ExperimentConfig]],
    results_dir: str | Path | None = None,
    blank_below: float = BLANK_BELOW,
    window: int = TRAILING_WINDOW,
) -> pd.DataFrame:
    """Per (run, epoch) of runs recorded with ``record_pruning``: the pruned fraction of
    blank pixels' connections minus that of inked pixels' (``excess``; above 0: blank
    pixels pruned more), as a trailing ``window``-epoch mean, and the blank pixels' share
    of the connections over their share of the pixels (``blank_share_ratio``)."""
    root = results_root(results_dir)
    ink = training_ink()
    frames = []
    for label, configs in groups.items():
        for config in configs:
            run_dir = RunDir.of(config, root).verified(config).path
            regions = pruning_by_region(
                *RunDir(run_dir).pruning(), RunDir(run_dir).topology(), ink, blank_below=blank_below
            ).pivot(index="epoch", columns="region")
            excess = (
                (regions["pruned_fraction"]["blank"] - regions["pruned_fraction"]["inked"])
                .rolling(window, min_periods=1)
                .mean()
            )
            share = regions["share_of_connections"]["blank"] / (ink < blank_below).mean()
            frames.append(
                pd.DataFrame(
                    {
                        "epoch": excess.index,
                        "excess": excess.values,
                        "blank_share_ratio": share.values,
                        "configuration": label,
                        "seed": config.seed,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def labelled_runs(sweeps: Iterable[str], overrides: dict | None = None) -> dict[str, list[ExperimentConfig]]:
    """Configs of several sweep files grouped as the report's tables group them (seeds
    pooled), labelled ``"<sweep>: <label>"`` (:func:`synapses_study.setup.sweep_file.run_labels`)."""
    groups: dict[str, list[ExperimentConfig]] = {}
    for name in sweeps:
        for label, configs in labelled_groups(load_sweep(CONFIGS / f"{name}.yaml", override=overrides)).items():
            groups.setdefault(name if label in ("all", name) else f"{name}: {label}", []).extend(configs)
    return groups


def final_survivor_counts(run_dir: Path) -> np.ndarray:
    """``(784,)`` first-layer connections per pixel that the last epoch's pruning kept.

    Read from the final network (connections whose ``pruned`` flag is off); from the pruning
    record where a run kept no network; and from the recorded topology where the run never
    evolved (``evolution: off`` prunes nothing, so every recorded connection survives).

    Raises:
        ValueError: an evolving run that kept neither its network nor its pruning record.
    """
    folder = RunDir(run_dir)
    config = folder.verified_config()
    topology = folder.topology()
    if config.evolution == "off":
        return topology[-1]
    if folder.model_file.exists():
        return final_survivors(folder.model_state())
    if config.record_pruning:
        return topology[-1] - folder.pruning()[0][-1]
    raise ValueError(
        f"{folder.path}: no final network and no pruning record, so its survivors cannot be read; "
        "rerun it with keep_network or record_pruning"
    )


def final_values(groups: dict[str, list[ExperimentConfig]], results_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per finished run of labelled groups: ``configuration``, ``seed``, and at the
    last epoch ``ink_rho`` and ``center_ratio`` on survivors (:func:`final_survivor_counts`)."""
    root = results_root(results_dir)
    rows = []
    for label, configs in groups.items():
        for config in configs:
            survivors = final_survivor_counts(RunDir.of(config, root).verified(config).path)
            rows.append(
                dict(
                    configuration=label,
                    seed=config.seed,
                    ink_rho=float(ink_correlation(survivors, training_ink())),
                    center_ratio=float(center_ratio(survivors)),
                )
            )
    return pd.DataFrame(rows)
