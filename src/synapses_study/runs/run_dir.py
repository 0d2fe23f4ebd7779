"""A run's folder, ``results/<run_id>/``: the one place that knows its files.

The engine writes a run through :class:`RunDir`, the sweep asks it for a run's state, and
the analysis reads results back through it; nobody else names a file of a run folder.
How each file is encoded (sealed ``.pt`` files, compact topology steps) is
:mod:`synapses_study.runs.run_files`' business.

Files:

* ``config.json``: the configuration; ``environment.json``: thread count and library
  versions the numbers were made with;
* ``metrics.csv``: one row per epoch, :data:`METRIC_COLUMNS`; ``metrics.csv.xz`` (the same
  text, xz-compressed) once the run is finished;
* ``topology.npz``: ``(epochs + 1, 784)`` first-layer connections per input pixel, row 0 at
  initialisation;
* ``pruning.npz`` (runs with ``record_pruning``): ``pruned_counts`` and ``abs_weight_sum``,
  each ``(epochs, 784)``, the sums rounded to float16;
* ``lifetimes.npz`` (runs with ``record_lifetimes``): every first-layer connection's life
  (:mod:`synapses_study.runs.lifetimes`);
* ``gradients.npz`` (runs with ``record_gradients``): ``squared_gradient`` ``(epochs, 784)``,
  each epoch's squared first-layer gradients summed per input pixel
  (:class:`synapses_study.runs.instruments.GradientRecorder`);
* ``model.pt``: the final network, once the run is finished;
* ``checkpoint.pt`` while it is not: network, optimizer and random states;
* ``manifest.json``, written last: the run id and every result file's size and SHA-256;
  a run is finished when its manifest verifies (:meth:`RunDir.problem`);
* ``.lock``: held by the process training the run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..setup.config import ExperimentConfig
from ..setup.paths import results_root
from .history import History
from .instruments import file_names, instruments_for
from .run_files import (
    DamagedFileError,
    file_digest,
    hold_lock,
    load_checkpoint,
    load_model_state,
    read_gradients,
    read_pruning,
    read_text,
    read_topology,
    save_checkpoint,
    save_model,
    write_atomic,
    write_topology,
    write_xz_text,
)

METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "center_ratio",
    "decay_in_force",
    "seconds",
)

RunState = Literal["done", "partial", "new", "damaged", "diverged"]
MANIFEST_FORMAT = "synapses-run/1"


def read_metric_rows(path: Path) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` or ``metrics.csv.xz`` (epoch as int, the rest as float).

    Raises:
        DamagedFileError: a header that is not :data:`METRIC_COLUMNS`, a row cut short or
            with a value that is not a number, or epochs that do not count 1, 2, ...
    """
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])

    def damaged(why: str) -> DamagedFileError:
        return DamagedFileError(f"{path} is damaged ({why}); delete {path.parent} to rerun that run")

    if tuple(header) != METRIC_COLUMNS:
        raise damaged(f"header {','.join(header)!r}, expected {','.join(METRIC_COLUMNS)!r}")
    if text and not text.endswith("\n"):
        raise damaged("its last line is cut short")
    rows = []
    for number, cells in enumerate(reader, start=1):
        try:
            if len(cells) != len(header):
                raise ValueError(f"{len(cells)} values")
            row = {name: (int(cell) if name == "epoch" else float(cell)) for name, cell in zip(header, cells)}
        except ValueError as err:
            raise damaged(f"row {number}: {err}") from None
        if row["epoch"] != number:
            raise damaged(f"row {number} is epoch {row['epoch']}")
        rows.append(row)
    return rows


def metrics_text(rows: list[dict[str, float]]) -> str:
    """``metrics.csv``'s content for ``rows`` (floats written with ``repr``: exact round trip)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


class RunDir:
    """The folder of one run. ``RunDir.of(config, results_dir)`` names it by the run id."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def of(cls, config: ExperimentConfig, results_dir: str | Path | None = None) -> RunDir:
        """The folder of ``config``'s run in ``results_dir`` (default: the checkout's ``results/``)."""
        return cls(results_root(results_dir) / config.run_id())

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # file names: here and nowhere else
    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def environment_file(self) -> Path:
        return self.path / "environment.json"

    @property
    def metrics_file(self) -> Path:
        """``metrics.csv.xz`` once the run is finished, ``metrics.csv`` while it trains."""
        packed = self.path / "metrics.csv.xz"
        return packed if packed.exists() else self.path / "metrics.csv"

    @property
    def topology_file(self) -> Path:
        return self.path / "topology.npz"

    @property
    def pruning_file(self) -> Path:
        return self.path / "pruning.npz"

    @property
    def lifetimes_file(self) -> Path:
        return self.path / "lifetimes.npz"

    @property
    def gradients_file(self) -> Path:
        return self.path / "gradients.npz"

    @property
    def model_file(self) -> Path:
        return self.path / "model.pt"

    @property
    def checkpoint_file(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def diverged_file(self) -> Path:
        return self.path / "diverged.txt"

    @property
    def manifest_file(self) -> Path:
        return self.path / "manifest.json"

    def result_files(self, config: ExperimentConfig) -> list[Path]:
        """The files a finished run of ``config`` holds, each listed in its manifest."""
        files = [self.config_file, self.environment_file, self.path / "metrics.csv.xz", self.topology_file]
        files += [self.model_file] if config.keep_network else []
        return files + [self.path / name for name in file_names(config)]

    # ------------------------------------------------------------------ state
    def problem(self, config: ExperimentConfig) -> str | None:
        """Why this folder is not a finished run of ``config`` (``None`` when it is).

        A run is finished when its ``manifest.json`` (written last by :meth:`finish`) names
        this run and every result file matches the size and SHA-256 it lists: a file
        truncated, damaged or edited after the run finished is caught here, by every
        reader, and the run is not finished.
        """
        if not self.path.is_dir():
            return "no run folder"
        if not self.manifest_file.exists():
            if self.diverged_file.exists():
                return self.diverged_file.read_text().strip()
            if self.checkpoint_file.exists():
                return "unfinished: a checkpoint is there"
            if final := self.final_files_without_manifest():
                verb = "is" if len(final) == 1 else "are"
                return f"{self.manifest_file.name} is missing but the finished run's {' and '.join(final)} {verb} there"
            return "not finished (no manifest.json)"
        try:
            manifest = json.loads(self.manifest_file.read_text())
            listed = manifest["files"]
            found = (manifest["format"], manifest["run_id"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            return f"{self.manifest_file.name} is damaged"
        if found != (MANIFEST_FORMAT, config.run_id()):
            return f"{self.manifest_file.name} is not this run's (format {found[0]!r}, run {found[1]!r})"
        for path in self.result_files(config):
            if path.name not in listed:
                return f"{self.manifest_file.name} does not list {path.name}"
            if not path.exists():
                return f"{path.name} is missing"
            if file_digest(path) != listed[path.name]:
                return (
                    f"{path.name} does not match {self.manifest_file.name} (changed or damaged after the run finished)"
                )
        return None

    def final_files_without_manifest(self) -> list[str]:
        """Names of the files only a finished run writes (``metrics.csv.xz``, ``model.pt``),
        when there is neither a manifest nor a checkpoint: such a folder lost its manifest
        after it finished (a crash inside :meth:`finish` leaves the checkpoint, and resumes)."""
        if self.manifest_file.exists() or self.checkpoint_file.exists():
            return []
        return [p.name for p in (self.path / "metrics.csv.xz", self.model_file) if p.exists()]

    def finished(self, config: ExperimentConfig) -> bool:
        """Whether ``config``'s run is finished here, verified (see :meth:`problem`); for
        readers that leave out runs not yet finished but must never leave out a damaged one.

        Raises:
            DamagedFileError: the folder is ``damaged``: a manifest whose files do not verify,
                or a finished run's files without their manifest.
        """
        if (problem := self.problem(config)) is None:
            return True
        if self.state(config) == "damaged":
            raise DamagedFileError(f"{self.path}: {problem}; delete the folder to rerun that run")
        return False

    def verified(self, config: ExperimentConfig) -> RunDir:
        """This folder, once verified to hold ``config``'s finished run (its manifest names
        ``config``'s run id and every file matches it): what a reader of a run's numbers calls.

        Raises:
            DamagedFileError: the run is not finished here, or a file does not verify.
        """
        if (problem := self.problem(config)) is not None:
            raise DamagedFileError(f"{self.path}: {problem}; finish or delete that run before reading it")
        return self

    def is_finished(self, config: ExperimentConfig) -> bool:
        """Whether the folder holds the verified results of ``config`` (see :meth:`problem`)."""
        return self.problem(config) is None

    def state(self, config: ExperimentConfig) -> RunState:
        """``"done"``, ``"partial"`` (a checkpoint to resume from), ``"new"``, or
        ``"damaged"`` (a manifest whose files do not verify: nothing to resume, and training
        over it would hide the damage) or ``"diverged"`` (its loss became non-finite:
        ``diverged.txt`` says when; resuming would repeat it, bit for bit)."""
        if self.is_finished(config):
            return "done"
        if self.manifest_file.exists() or self.final_files_without_manifest():
            return "damaged"
        if self.diverged_file.exists():
            return "diverged"
        return "partial" if self.checkpoint_file.exists() else "new"

    def verified_config(self) -> ExperimentConfig:
        """The configuration of a finished run, its files verified against the manifest.

        Raises:
            DamagedFileError: the folder is not a finished run, or a file does not verify.
        """
        config = self.config()
        if (problem := self.problem(config)) is not None:
            raise DamagedFileError(f"{self.path}: {problem}; delete the folder to rerun that run")
        return config

    def epochs_recorded(self) -> int:
        """Rows of the metrics (0 without any)."""
        if not self.metrics_file.exists():
            return 0
        return read_text(self.metrics_file).count("\n") - 1

    def work_recorded(self) -> tuple[int, float]:
        """Epochs and seconds of training recorded (the metrics' rows and the sum of their
        ``seconds``; 0 and 0 without metrics), from one read of the file."""
        if not self.metrics_file.exists():
            return 0, 0.0
        rows = read_metric_rows(self.metrics_file)
        return len(rows), float(sum(row["seconds"] for row in rows))

    def config(self) -> ExperimentConfig:
        return ExperimentConfig.from_json(self.config_file)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold ``.lock`` while training: two processes on one run would corrupt it.

        Raises:
            RunInProgressError: another process holds it.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        return hold_lock(self.path)

    def wait_while_in_progress(self) -> None:
        """Return once no other process is training this run."""
        if self.path.is_dir():
            with hold_lock(self.path, wait=True):
                pass

    # ------------------------------------------------------------------ writing
    def start(self, config: ExperimentConfig, environment: dict[str, Any]) -> None:
        """Write ``config.json`` and ``environment.json`` of a run that starts from scratch."""
        write_atomic(self.config_file, (config.to_json() + "\n").encode())
        self.diverged_file.unlink(missing_ok=True)
        write_atomic(self.environment_file, (json.dumps(environment, indent=2) + "\n").encode())

    def note_resume(self, environment: dict[str, Any], epoch: int) -> list[str]:
        """Record in ``environment.json`` that the run resumed after ``epoch`` under
        ``environment``, when that differs from the environment it started in (its numbers
        from then on come from other library versions or another machine). Returns what
        differs (``name: old -> new``), empty when nothing does."""
        recorded = json.loads(self.environment_file.read_text()) if self.environment_file.exists() else {}
        started = {k: v for k, v in recorded.items() if k != "resumed"}
        changed = [f"{k}: {started.get(k)} -> {v}" for k, v in environment.items() if started.get(k) != v]
        if changed:
            recorded["resumed"] = [*recorded.get("resumed", []), {"after_epoch": epoch, **environment}]
            write_atomic(self.environment_file, (json.dumps(recorded, indent=2) + "\n").encode())
        return changed

    def mark_diverged(self, message: str) -> None:
        """Leave ``diverged.txt``: the run stops for good, and says why, to every reader."""
        write_atomic(self.diverged_file, (message + "\n").encode())

    def write_history(self, history: History, final: bool = False) -> None:
        """``metrics.csv``, ``topology.npz`` and each instrument's file for the epochs done so far
        (``final``: the finished run's, compressed harder, the metrics as ``metrics.csv.xz``;
        see :mod:`.run_files`). The other form of the metrics is removed once the new one is
        in place, so a crash between the two leaves both, never neither."""
        plain, packed = self.path / "metrics.csv", self.path / "metrics.csv.xz"
        if final:
            write_xz_text(packed, metrics_text(history.rows))
            plain.unlink(missing_ok=True)
        else:
            write_atomic(plain, metrics_text(history.rows).encode())
            packed.unlink(missing_ok=True)
        write_topology(self.topology_file, np.stack(history.counts), final)
        for instrument in history.instruments:
            instrument.write(self.path / instrument.file_name, final)

    def save_checkpoint(self, resumable: dict[str, Any], run_id: str, epoch: int) -> None:
        save_checkpoint(self.checkpoint_file, resumable, run_id, epoch)

    def finish(self, history: History, model_state: dict[str, torch.Tensor] | None, config: ExperimentConfig) -> None:
        """Rewrite the history in its final form, write the final network (unless
        ``model_state`` is ``None``: ``keep_network: false``), seal the results in
        ``manifest.json`` (from then on the run is finished) and drop the checkpoint."""
        self.write_history(history, final=True)
        if model_state is not None:
            save_model(self.model_file, model_state, config.run_id())
        self.seal(config)
        self.checkpoint_file.unlink(missing_ok=True)

    def seal(self, config: ExperimentConfig) -> None:
        """Write ``manifest.json``: the run id and each result file's size and SHA-256."""
        files = {path.name: file_digest(path) for path in self.result_files(config)}
        manifest = {"format": MANIFEST_FORMAT, "run_id": config.run_id(), "files": files}
        write_atomic(self.manifest_file, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())

    # ------------------------------------------------------------------ reading
    def checkpoint(self, run_id: str) -> dict[str, Any] | None:
        """The checkpoint's content (checked to belong to ``run_id``), ``None`` if there is none."""
        return load_checkpoint(self.checkpoint_file, run_id) if self.checkpoint_file.exists() else None

    def model_state(self) -> dict[str, torch.Tensor]:
        """The final network's state dict, checked to be this folder's run's.

        Raises:
            FileNotFoundError: the run kept no network (``keep_network: false``; a ``model.pt``
                dropped into such a folder is not its run's and is never read).
            DamagedFileError: ``model.pt`` is damaged or sealed for another run.
        """
        config = self.config() if self.config_file.exists() else None
        if config is not None and not config.keep_network:
            raise FileNotFoundError(
                f"{self.path.name} kept no final network (keep_network: false): nothing can start from it"
            )
        return load_model_state(self.model_file, config.run_id() if config is not None else None)

    def history(self, epochs: int, config: ExperimentConfig) -> History:
        """The first ``epochs`` epochs of ``config``'s history (what a checkpoint of epoch
        ``epochs`` resumes), its instruments resumed but not attached to a network.

        Raises:
            DamagedFileError: a file the run has written since its first epoch is missing or
                holds fewer epochs than the checkpoint: resuming would finish a run with a
                hole in its records, or fail at its end, on every rerun.
        """

        def damaged(why: str) -> DamagedFileError:
            return DamagedFileError(f"{self.path}: {why}; delete the folder to restart that run")

        needed = [self.config_file, self.environment_file, self.metrics_file, self.topology_file]
        needed += [self.path / name for name in file_names(config)]
        if missing := [path.name for path in needed if not path.exists()]:
            raise damaged(f"{', '.join(missing)} missing beside the checkpoint of epoch {epochs}")
        rows = read_metric_rows(self.metrics_file)
        counts = self.topology()
        if len(rows) < epochs or len(counts) < epochs + 1:
            raise damaged(
                f"results hold {len(rows)} epochs of metrics, {len(counts) - 1} of topology, the checkpoint {epochs}"
            )
        history = History(epochs, rows[:epochs], list(counts[: epochs + 1]), instruments_for(config))
        for instrument in history.instruments:
            instrument.resume(self.path / instrument.file_name, epochs)
        return history

    def gradients(self) -> np.ndarray:
        """``(epochs, 784)`` each epoch's summed squared first-layer gradients per pixel, of
        a run recorded with ``record_gradients``."""
        if not self.gradients_file.exists():
            raise FileNotFoundError(
                f"{self.path} has no {self.gradients_file.name}: only runs made with record_gradients have one"
            )
        return read_gradients(self.gradients_file)

    def topology(self) -> np.ndarray:
        """``(epochs + 1, 784)`` connections per input pixel, row 0 at initialisation."""
        return read_topology(self.topology_file)

    def pruning(self) -> tuple[np.ndarray, np.ndarray]:
        """``(pruned_counts, abs_weight_sum)``, each ``(epochs, 784)``, of a run recorded with
        ``record_pruning`` (the sums NaN where ``record_weight_mass`` was off)."""
        if not self.pruning_file.exists():
            raise FileNotFoundError(
                f"{self.path} has no {self.pruning_file.name}: only runs made with record_pruning have one"
            )
        pruned, weight_mass = read_pruning(self.pruning_file)
        return pruned, weight_mass if weight_mass is not None else np.full(pruned.shape, np.nan)
