"""Training runs with results on disk: deterministic, checkpointed every epoch, resumable.

``run_experiment(config)`` trains the configured network on MNIST and writes, in
``results/<run_id>/``:

* ``config.json``: the configuration;
* ``metrics.csv``: one row per epoch (losses, accuracies as fractions, ``center_ratio``,
  the weight decay in force and the wall-clock ``seconds`` of the epoch);
* ``topology.npz``: connections of the first layer per input pixel at initialisation and
  after each epoch, ``(epochs + 1, 784)``, stored as steps between epochs (read it with
  :func:`synapses.study.run_files.read_topology`);
* ``pruning.npz`` with ``record_pruning``: ``pruned_counts`` ``(epochs, 784)`` first-layer
  connections pruned after each epoch, per input pixel, and ``abs_weight_sum``
  ``(epochs, 784)`` the sum of ``|weight|`` of each pixel's connections just before pruning;
* ``environment.json``: thread count and library versions the numbers were made with;
* ``model.pt``: the final network (small; lets a later run start from it);
* ``checkpoint.pt`` while the run is unfinished: network, optimizer and random states
  (the history is in the two files above). Committed with unfinished runs, so that a
  later session on another machine resumes them.

``model.pt`` and ``checkpoint.pt`` carry a checksum and their run id
(:mod:`synapses.study.run_files`): a damaged or foreign one stops the run with an error that
names it, and a run whose ``model.pt`` is damaged does not count as finished.

Every file is written to a temporary name and renamed, so an interrupted run leaves either
the previous version or the new one. A run resumed from its checkpoint ends with the same
files, bit for bit, as an uninterrupted one (except the ``seconds`` column).
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..layer import Regrowth
from ..models import DenseNet, EvolNet, SparseNet
from .analysis import abs_weight_sum
from .config import INPUT_SIZE, ConfigError, ExperimentConfig
from .data import MEAN, STD, MNISTTensors, load_mnist
from .decay import WeightDecayPolicy
from .paths import RESULTS
from .run_files import (
    DamagedFileError,
    is_intact,
    load_checkpoint,
    load_model_state,
    read_pruning,
    read_topology,
    save_checkpoint,
    save_model,
    write_atomic,
    write_pruning,
    write_topology,
)
from .topology import SIDE, center_ratio, pixel_counts

DEFAULT_RESULTS = RESULTS
N_CLASSES = 10
# The data order has its own generator, seeded apart from the model's (a prime offset, so
# that no run's data order repeats another run's model draws).
DATA_SEED_OFFSET = 1_000_003
METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "center_ratio", "weight_decay", "seconds")


@dataclass
class RunState:
    """The history of a run: what metrics.csv and topology.npz hold."""

    epoch: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)
    counts: list[np.ndarray] = field(default_factory=list)
    pruned: list[np.ndarray] = field(default_factory=list)  # with record_pruning only
    weight_mass: list[np.ndarray] = field(default_factory=list)


# ---------------------------------------------------------------------------- building
Network = Union[SparseNet, DenseNet]


def build_model(config: ExperimentConfig, generator: torch.Generator) -> Network:
    """The network of ``config``; SET randomness comes from ``generator``."""
    sizes = (INPUT_SIZE, *config.hidden, N_CLASSES)
    if config.model == "Dense":
        return DenseNet(sizes, dropout=config.dropout)
    # near-parents regrowth acts on the input layer: the one with a pixel geometry
    parents = config.regrowth == "near_parents"
    regrowth: Regrowth = "near_parents" if parents else "uniform"
    grid = (SIDE, SIDE) if parents else None
    if config.model == "EvolNet":
        return EvolNet(
            config.evolution_proba, sizes, config.layer_epsilons(), config.zeta, generator=generator, dropout=config.dropout,
            per_layer=True, input_regrowth=regrowth, parent_fraction=config.parent_fraction, input_grid=grid,
        )
    return SparseNet(
        sizes, config.layer_epsilons(), config.zeta, generator=generator, dropout=config.dropout,
        input_regrowth=regrowth, parent_fraction=config.parent_fraction, input_grid=grid,
    )


def build_optimizer(config: ExperimentConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    coupled = WeightDecayPolicy.of(config).optimizer_coefficient(1)
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=coupled)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=coupled)


def fix_topology(model: SparseNet, source_state: dict[str, torch.Tensor]) -> None:
    """Give ``model``'s SET layers the connections of ``source_state`` (a state dict of the
    same architecture), keeping their freshly drawn weights."""
    for i, layer in enumerate(model.sparse_layers()):
        connections = source_state[f"set_layers.{i}.connections"]
        if connections.shape != layer.connections.shape:
            raise ValueError(f"topology_from: layer {i} has {len(connections)} connections there, {layer.n_params} here")
        layer.connections.copy_(connections)


def first_layer_counts(model: Network) -> np.ndarray:
    """``(784,)`` connections of the first layer per input pixel (all ``out_features`` for
    a dense layer)."""
    if isinstance(model, DenseNet):
        dense = model.hidden_layers[0]
        assert isinstance(dense, torch.nn.Linear)
        return np.full(dense.in_features, dense.out_features, dtype=np.int64)
    first = model.sparse_layers()[0]
    return pixel_counts(first.connections, first.in_features)


# ---------------------------------------------------------------------------- one epoch
def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: MNISTTensors,
    batch_size: int,
    decay: WeightDecayPolicy,
    epoch: int,
    generator: torch.Generator,
) -> tuple[float, float]:
    """One pass over the training set; returns (mean batch loss, accuracy)."""
    model.train()
    params = list(model.parameters())
    total_loss, correct = 0.0, 0
    order = torch.randperm(len(data.train_y), generator=generator)
    # One gather per epoch; the batches are then contiguous slices (views).
    xs = data.train_x.index_select(0, order).split(batch_size)
    ys = data.train_y.index_select(0, order).split(batch_size)
    for x, y in zip(xs, ys):
        optimizer.zero_grad(set_to_none=True)
        output = model(x)
        loss = F.nll_loss(output, y)
        decay.objective(loss, params).backward()
        optimizer.step()
        decay.after_step(params, epoch)
        total_loss += loss.item()
        correct += int((output.argmax(1) == y).sum())
    return total_loss / len(xs), correct / len(data.train_y)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """(mean loss per sample, accuracy) of ``model`` on ``x`` ``(n, 784)``, ``y`` ``(n,)``."""
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        output = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        total_loss += F.nll_loss(output, target, reduction="sum").item()
        correct += int((output.argmax(1) == target).sum())
    return total_loss / len(y), correct / len(y)


# ---------------------------------------------------------------------------- files
def _write_text(path: Path, text: str) -> None:
    write_atomic(path, text.encode())


def write_results(run_dir: Path, state: RunState) -> None:
    """metrics.csv and topology.npz (and pruning.npz) for the epochs done so far."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in state.rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    _write_text(run_dir / "metrics.csv", buffer.getvalue())
    write_topology(run_dir / "topology.npz", np.stack(state.counts))
    if state.pruned:
        write_pruning(run_dir / "pruning.npz", np.stack(state.pruned), np.stack(state.weight_mass))


def environment() -> dict[str, Any]:
    import torchvision

    return {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def is_finished(run_dir: Path, config: ExperimentConfig) -> bool:
    """Whether ``run_dir`` holds all ``config.epochs`` epochs of results and an intact
    final network (a damaged ``model.pt`` does not count)."""
    metrics = run_dir / "metrics.csv"
    if not (metrics.exists() and (run_dir / "topology.npz").exists() and (run_dir / "model.pt").exists()):
        return False
    with open(metrics) as f:
        if sum(1 for _ in f) - 1 != config.epochs:
            return False
    return is_intact(run_dir / "model.pt")


def load_trained_model(run_dir: str | Path) -> Network:
    """The final network of a finished run (``config.json`` and ``model.pt``), in eval mode."""
    run_dir = Path(run_dir)
    config = ExperimentConfig.from_json(run_dir / "config.json")
    model = build_model(config, torch.Generator().manual_seed(config.seed))
    model.load_state_dict(load_model_state(run_dir / "model.pt"))
    return model.eval()


# ---------------------------------------------------------------------------- the run
def run_experiment(
    config: ExperimentConfig,
    results_dir: str | Path | None = None,
    *,
    data: MNISTTensors | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Train ``config`` to its last epoch (resuming from a checkpoint if there is one).

    Args:
        config: what to run.
        results_dir: parent of the run's folder (default: the repository's ``results/``).
        data: MNIST tensors (loaded if ``None``; pass them to share one copy between runs).
        progress: show a tqdm bar over epochs.
        stop_after: stop (checkpointed, resumable) once this many epochs are done; for tests
            and for splitting long runs.

    Returns:
        The run's folder, ``results_dir / config.run_id()``.
    """
    run_dir = Path(results_dir if results_dir is not None else DEFAULT_RESULTS) / config.run_id()
    if is_finished(run_dir, config):
        return run_dir
    if (run_dir / "model.pt").exists() and not is_intact(run_dir / "model.pt"):
        # a finished run whose network is damaged: say so rather than train over its results
        raise DamagedFileError(f"{run_dir / 'model.pt'} is damaged; delete {run_dir} to rerun that run from scratch")
    for name in ("init_from", "topology_from"):
        if (source := getattr(config, name)) is not None:
            _require_finished(run_dir.parent / source, name)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(run_dir):
        return _run(config, run_dir, data if data is not None else load_mnist(), progress, stop_after)


def _require_finished(source_dir: Path, field_name: str) -> None:
    """Refuse a run that starts from ``source_dir`` unless that run is finished."""
    config_file = source_dir / "config.json"
    if not (config_file.exists() and is_finished(source_dir, ExperimentConfig.from_json(config_file))):
        raise ConfigError(f"{field_name}={source_dir.name!r}: no finished run of that id in {source_dir.parent} (run that config first)")


@contextlib.contextmanager
def _exclusive(run_dir: Path):
    """Hold ``run_dir/.lock``: two processes training the same run would corrupt it."""
    with open(run_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInProgressError(f"{run_dir} is being trained by another process") from None
        yield


class RunInProgressError(RuntimeError):
    """Another process holds the run's lock."""


def prepare_data(data: MNISTTensors, config: ExperimentConfig) -> MNISTTensors:
    """The subset (``train_size``, ``test_size``) and input scaling of ``config``.

    ``inputs="unit"`` undoes the standardisation: pixels in [0, 1], blank pixels exactly 0,
    so that weights from blank pixels receive no gradient at all. ``inputs="scaled"``
    undoes only the centring: pixels in [0, 1 / 0.3081], the standardised scale with blank
    pixels at 0.
    """
    train_x, test_x = data.train_x[: config.train_size], data.test_x[: config.test_size]
    if config.inputs == "unit":
        train_x, test_x = ((x * STD + MEAN).clamp_(0, 1) for x in (train_x, test_x))
    elif config.inputs == "scaled":
        train_x, test_x = ((x * STD + MEAN).clamp_(0, 1) / STD for x in (train_x, test_x))
    return MNISTTensors(train_x, data.train_y[: config.train_size], test_x, data.test_y[: config.test_size])


def _run(config: ExperimentConfig, run_dir: Path, data: MNISTTensors, progress: bool, stop_after: int | None) -> Path:
    torch.set_num_threads(config.threads)
    data = prepare_data(data, config)

    torch.manual_seed(config.seed)  # the dense readout's initialisation
    model_rng = torch.Generator().manual_seed(config.seed)
    data_rng = torch.Generator().manual_seed(config.seed + DATA_SEED_OFFSET)
    model = build_model(config, model_rng)
    if config.init_from is not None:
        model.load_state_dict(load_model_state(run_dir.parent / config.init_from / "model.pt"))
    if config.topology_from is not None:
        assert isinstance(model, SparseNet)  # config validation: topology_from is for SET models
        fix_topology(model, load_model_state(run_dir.parent / config.topology_from / "model.pt"))
    optimizer = build_optimizer(config, model)
    reset = optimizer if config.reset_optimizer_state else None  # whose state moved weights reset
    if isinstance(model, EvolNet):
        model.optimizer = reset  # EvolNet evolves inside forward; the optimizer needs the model first

    state = RunState(counts=[first_layer_counts(model)])
    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.exists():
        saved = load_checkpoint(checkpoint, config.run_id())
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        model_rng.set_state(saved["model_rng"])
        data_rng.set_state(saved["data_rng"])
        torch.set_rng_state(saved["torch_rng"])
        state = read_history(run_dir, saved["epoch"])
    else:
        _write_text(run_dir / "config.json", config.to_json() + "\n")
        _write_text(run_dir / "environment.json", json.dumps(environment(), indent=2) + "\n")

    last = config.epochs if stop_after is None else min(config.epochs, stop_after)
    bar = _progress_bar(config, state.epoch, progress)
    decay = WeightDecayPolicy.of(config)
    for epoch in range(state.epoch + 1, last + 1):
        start = time.perf_counter()
        decay.set_epoch(optimizer, epoch)
        if config.evolution == "epoch" and epoch > 1:
            assert isinstance(model, SparseNet)  # config validation: Dense has evolution "off"
            model.evolve_connections(optimizer=reset)
        train_loss, train_acc = train_epoch(model, optimizer, data, config.batch_size, decay, epoch, data_rng)
        first = model.sparse_layers()[0] if isinstance(model, SparseNet) else None
        if config.record_pruning and first is not None:
            state.weight_mass.append(abs_weight_sum(first.connections, first.weight, first.in_features))
        if config.evolution == "epoch":
            assert isinstance(model, SparseNet)
            model.zero_connections()
        if config.record_pruning and first is not None:
            state.pruned.append(pixel_counts(first.connections[first.pruned], first.in_features))
        test_loss, test_acc = evaluate(model, data.test_x, data.test_y, config.batch_size)
        counts = first_layer_counts(model)
        state.epoch = epoch
        state.counts.append(counts)
        state.rows.append(
            dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss, test_acc=test_acc,
                 center_ratio=float(center_ratio(counts)), weight_decay=decay.at(epoch), seconds=round(time.perf_counter() - start, 3))
        )
        # Results first: if killed in between, the checkpoint is one epoch behind and the
        # extra epoch of history is dropped on resume.
        write_results(run_dir, state)
        resumable = {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "model_rng": model_rng.get_state(),
            "data_rng": data_rng.get_state(), "torch_rng": torch.get_rng_state(), "epoch": state.epoch,
        }
        save_checkpoint(checkpoint, resumable, config.run_id(), state.epoch)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.4f}", test_acc=f"{test_acc:.4f}", center=f"{state.rows[-1]['center_ratio']:.3f}")
    if bar is not None:
        bar.close()
    if state.epoch == config.epochs:
        save_model(run_dir / "model.pt", model.state_dict(), config.run_id())
        checkpoint.unlink(missing_ok=True)
    return run_dir


def read_history(run_dir: Path, epochs: int) -> RunState:
    """The first ``epochs`` epochs of history from the results files."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]
    counts = read_topology(run_dir / "topology.npz")
    if len(rows) < epochs or len(counts) < epochs + 1:
        raise RuntimeError(f"{run_dir}: results hold {len(rows)} epochs, the checkpoint {epochs}; delete the folder to restart")
    state = RunState(epochs, rows[:epochs], list(counts[: epochs + 1]))
    if (run_dir / "pruning.npz").exists():
        pruned, weight_mass = read_pruning(run_dir / "pruning.npz")
        state.pruned, state.weight_mass = list(pruned[:epochs]), list(weight_mass[:epochs])
    return state


def _progress_bar(config: ExperimentConfig, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.epochs, initial=done, desc=config.run_id(), unit="epoch", dynamic_ncols=True)
