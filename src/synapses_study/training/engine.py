"""Training runs with results on disk: deterministic, checkpointed every epoch, resumable.

``run_experiment(config)`` trains the configured network on MNIST into
``results/<run_id>/`` (the files: :mod:`synapses_study.runs.run_dir`). Every file is written to a
temporary name and renamed, so an interrupted run leaves either the previous version or the
new one; a run resumed from its checkpoint ends with the same files, bit for bit, as an
uninterrupted one (except the ``seconds`` column). A damaged or foreign checkpoint stops the
run with an error that names it, and a run whose ``model.pt`` is damaged does not count as
finished.
"""

from __future__ import annotations

import math
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from synapses import ByHand, EvolNet, Evolution, SETLayer, SparseNet

from ..measures.topology import center_ratio
from ..runs.history import History
from ..runs.instruments import instruments_for
from ..runs.run_dir import RunDir
from ..runs.run_files import DamagedFileError
from ..setup.augment import Augmentation
from ..setup.config import ConfigError, ExperimentConfig
from ..setup.data import MNISTTensors, load_mnist, prepare_data
from ..setup.paths import RESULTS
from . import rounding
from .build import Network, build_model, build_optimizer, first_layer_counts, fix_topology
from .decay import WeightDecayPolicy

# The data order has its own generator, seeded apart from the model's (a prime offset, so
# that no run's data order repeats another run's model draws).
DATA_SEED_OFFSET = 1_000_003
# Shifts and blank-pixel noise draw from a third generator, so that turning them on leaves
# the data order and SET's draws as they are in the run without them.
AUGMENT_SEED_OFFSET = 2_000_003


# ---------------------------------------------------------------------------- one epoch
def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: MNISTTensors,
    batch_size: int,
    decay: WeightDecayPolicy,
    epoch: int,
    generator: torch.Generator,
    augment: Augmentation | None = None,
    augment_rng: torch.Generator | None = None,
) -> tuple[float, float]:
    """One pass over the training set; returns (mean batch loss, accuracy). ``augment``
    (drawing from ``augment_rng``) changes the epoch's images after they are shuffled."""
    model.train()
    params = list(model.parameters())
    # Summed where the data is, read once at the end (a GPU is not stopped for every batch);
    # in float64, as Python's float sums of the batch losses were.
    total_loss = torch.zeros((), dtype=torch.float64, device=data.train_x.device)
    correct = torch.zeros((), dtype=torch.int64, device=data.train_x.device)
    order = torch.randperm(len(data.train_y), generator=generator).to(data.train_x.device)
    # One gather per epoch; the batches are then contiguous slices (views).
    images = data.train_x.index_select(0, order)
    if augment is not None and augment.active:
        assert augment_rng is not None
        images = augment(images, augment_rng)
    xs = images.split(batch_size)
    ys = data.train_y.index_select(0, order).split(batch_size)
    for x, y in zip(xs, ys):
        optimizer.zero_grad(set_to_none=True)
        output = model(x)
        loss = F.nll_loss(output, y)
        decay.objective(loss, params).backward()
        optimizer.step()
        decay.after_step(params, epoch)
        total_loss += loss.detach().double()
        correct += (output.argmax(1) == y).sum()
    return total_loss.item() / len(xs), correct.item() / len(data.train_y)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """(mean loss per sample, accuracy) of ``model`` on ``x`` ``(n, 784)``, ``y`` ``(n,)``."""
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, len(y), batch_size):
        output = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        total_loss += F.nll_loss(output, target, reduction="sum").double()
        correct += (output.argmax(1) == target).sum()
    return total_loss.item() / len(y), correct.item() / len(y)


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
    folder = RunDir.of(config, results_dir if results_dir is not None else RESULTS)
    if folder.is_finished(config):
        # a run killed between sealing and dropping its checkpoint is finished all the same;
        # only then is anything removed (a finished run on a read-only folder writes nothing)
        if folder.checkpoint_file.exists():
            folder.checkpoint_file.unlink()
        return folder.path
    if folder.state(config) == "damaged":
        raise DamagedFileError(f"{folder.path}: {folder.problem(config)}; delete the folder to rerun that run")
    if folder.state(config) == "diverged":
        raise DivergedError(f"{folder.path}: {folder.problem(config)}")
    training_device(config)  # refused here, before anything is written, where it is absent
    for name in ("init_from", "topology_from"):
        if (source := getattr(config, name)) is not None:
            _require_finished(RunDir(folder.path.parent / source), name)
            _require_same_layers(RunDir(folder.path.parent / source).config(), config, name)
    with folder.lock():
        train(config, folder, data if data is not None else load_mnist(), progress, stop_after)
    return folder.path


def training_device(config: ExperimentConfig) -> torch.device:
    """The device of ``config.device``, if this machine has it.

    Raises:
        ConfigError: a CUDA device that torch does not see here.
    """
    device = torch.device(config.device)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ConfigError(f"device={config.device!r}: torch sees {count} CUDA device(s) on this machine")
    return device


class DivergedError(RuntimeError):
    """A run's training loss became non-finite: it stops, and is never counted as finished."""


def _require_same_layers(source: ExperimentConfig, config: ExperimentConfig, field_name: str) -> None:
    """Refuse a source run whose network has other layer shapes or connection counts."""

    def layers(c: ExperimentConfig) -> tuple[Any, ...]:
        sparse = c.model != "Dense"
        return (sparse, tuple(c.set_layer_shapes()), c.layer_epsilons() if sparse else None)

    if (
        field_name == "init_from"
        and layers(source) != layers(config)
        or field_name == "topology_from"
        and layers(source)[1:] != layers(config)[1:]
    ):
        raise ConfigError(
            f"{field_name}={config.init_from if field_name == 'init_from' else config.topology_from!r} is a "
            f"{source.model} with hidden "
            f"{list(source.hidden)} and epsilon {source.epsilon}; this run needs {config.model} with hidden "
            f"{list(config.hidden)} and epsilon {config.epsilon}"
        )


def _require_finished(source: RunDir, field_name: str) -> None:
    """Refuse a run that starts from ``source`` unless that run is finished."""
    if not (source.config_file.exists() and source.is_finished(source.config())):
        raise ConfigError(
            f"{field_name}={source.path.name!r}: no finished run of that id in {source.path.parent} (run that config "
            "first)"
        )
    if not source.config().keep_network:  # a model.pt found there is not that run's
        raise ConfigError(
            f"{field_name}={source.path.name!r} kept no final network (keep_network: false); start from a run that "
            "kept one"
        )


@dataclass
class Trainee:
    """What one run trains and the random streams it draws from."""

    model: Network
    optimizer: torch.optim.Optimizer
    decay: WeightDecayPolicy  # the run's weight decay, built once: the optimizer's coefficient and each epoch's
    model_rng: torch.Generator  # SET's draws: initial topology, regrowth
    data_rng: torch.Generator  # the order of the training images
    device: torch.device  # where the model is; on CUDA, dropout draws from that device's generator
    augment_rng: torch.Generator | None = None  # shifts and blank-pixel noise, where the config asks for them
    evolution: Evolution | None = (
        None  # SET's pruning and regrowth (evolution="epoch"); an EvolNet holds its own per-pass driver
    )

    def resumable(self, epoch: int) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "model_rng": self.model_rng.get_state(),
            "data_rng": self.data_rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": epoch,
        }
        if self.augment_rng is not None:
            state["augment_rng"] = self.augment_rng.get_state()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def restore(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.model_rng.set_state(saved["model_rng"])
        self.data_rng.set_state(saved["data_rng"])
        if self.augment_rng is not None:
            self.augment_rng.set_state(saved["augment_rng"])
        torch.set_rng_state(saved["torch_rng"])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda_rng"], self.device)


def build_trainee(config: ExperimentConfig, results_dir: Path) -> Trainee:
    """The network and optimizer of ``config`` at epoch 0, seeded. The network is built on
    the CPU, from the same draws on any device, then moved to ``config.device``."""
    torch.manual_seed(config.seed)  # the dense readout's initialisation (and every device's generator)
    model_rng = torch.Generator().manual_seed(config.seed)
    data_rng = torch.Generator().manual_seed(config.seed + DATA_SEED_OFFSET)
    model = build_model(config, model_rng)
    if config.init_from is not None:
        model.load_state_dict(RunDir(results_dir / config.init_from).model_state())
    if config.topology_from is not None:
        assert isinstance(model, SparseNet)  # config validation: topology_from is for SET models
        fix_topology(model, RunDir(results_dir / config.topology_from).model_state(), config.topology_layers)
    device = torch.device(config.device)
    model.to(device)
    decay = WeightDecayPolicy.of(config)
    optimizer = build_optimizer(config, model, decay)
    if isinstance(model, EvolNet) and config.reset_optimizer_state:
        # EvolNet evolves inside forward, so it holds the optimizer whose state moved weights
        # reset; the optimizer needs the model's parameters first.
        model.optimizer = optimizer
    augment_rng = (
        torch.Generator().manual_seed(config.seed + AUGMENT_SEED_OFFSET)
        if config.random_shift or config.blank_noise
        else None
    )
    # the library's driver, by hand, in its two halves: prune after an epoch's training (the
    # pruned network is evaluated and recorded), regrow before the next one
    evolution = (
        Evolution(model, optimizer, cadence=ByHand(), reset_optimizer_state=config.reset_optimizer_state)
        if config.evolution == "epoch"
        else None
    )
    return Trainee(model, optimizer, decay, model_rng, data_rng, device, augment_rng, evolution)


def train(
    config: ExperimentConfig, folder: RunDir, data: MNISTTensors, progress: bool = True, stop_after: int | None = None
) -> None:
    """The training loop: from the folder's checkpoint (or from scratch) to ``stop_after``
    or the last epoch, writing results and a checkpoint after every epoch, at the config's
    thread count (the caller's is restored afterwards, whatever happens)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        _train(config, folder, data, progress, stop_after)
    finally:
        torch.set_num_threads(threads)


def _train(
    config: ExperimentConfig, folder: RunDir, data: MNISTTensors, progress: bool, stop_after: int | None
) -> None:
    data = prepare_data(data, config.train_size, config.test_size, config.inputs).to(training_device(config))
    trainee = build_trainee(config, folder.path.parent)
    model, optimizer, run_id = trainee.model, trainee.optimizer, config.run_id()
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, SETLayer)]
    found = environment(trainee.device, layers, config.batch_size)
    warn_if_unpinned(found)
    if (saved := folder.checkpoint(run_id)) is not None:
        trainee.restore(saved)
        history = folder.history(saved["epoch"], config)
        if changed := folder.note_resume(found, saved["epoch"]):
            warnings.warn(
                f"{run_id} resumes after epoch {saved['epoch']} under another environment ({'; '.join(changed)}); "
                "recorded in environment.json",
                stacklevel=2,
            )
    else:
        folder.start(config, found)
        history = History(counts=[first_layer_counts(model)], instruments=instruments_for(config))
    if history.instruments:
        assert isinstance(model, SparseNet)  # config validation: instruments record a SET first layer
        watched = model.sparse_layers()[0]
        for instrument in history.instruments:
            if not history.epoch:
                instrument.start(watched)
            instrument.attach(watched)
    decay = trainee.decay
    augment = Augmentation(config.random_shift, config.blank_noise, float(data.train_x.min()))
    last = config.epochs if stop_after is None else min(config.epochs, stop_after)
    bar = _progress_bar(config, history.epoch, progress)
    for epoch in range(history.epoch + 1, last + 1):
        start = time.perf_counter()
        decay.set_epoch(optimizer, epoch)
        if trainee.evolution is not None and epoch > 1:
            evolve(trainee.evolution, config, history)
        train_loss, train_acc = train_epoch(
            model, optimizer, data, config.batch_size, decay, epoch, trainee.data_rng, augment, trainee.augment_rng
        )
        if not math.isfinite(train_loss):
            message = (
                f"diverged at epoch {epoch}: the training loss is {train_loss} (try a smaller lr); delete the folder "
                "to rerun it"
            )
            folder.mark_diverged(message)
            raise DivergedError(f"{run_id} {message}")
        for instrument in history.instruments:
            instrument.after_training(watched)
        prune(trainee.evolution, history)
        test_loss, test_acc = evaluate(model, data.test_x, data.test_y, config.batch_size)
        counts = first_layer_counts(model)
        history.epoch = epoch
        history.counts.append(counts)
        history.rows.append(
            dict(
                epoch=epoch,
                train_loss=train_loss,
                train_acc=train_acc,
                test_loss=test_loss,
                test_acc=test_acc,
                center_ratio=float(center_ratio(counts)),
                decay_in_force=decay.at(epoch),
                seconds=round(time.perf_counter() - start, 3),
            )
        )
        # Results first: if killed in between, the checkpoint is one epoch behind and the
        # extra epoch of history is dropped on resume.
        folder.write_history(history)
        folder.save_checkpoint(trainee.resumable(epoch), run_id, epoch)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                loss=f"{train_loss:.4f}", test_acc=f"{test_acc:.4f}", center=f"{history.rows[-1]['center_ratio']:.3f}"
            )
    if bar is not None:
        bar.close()
    for instrument in history.instruments:
        instrument.close()
    if history.epoch == config.epochs:
        folder.finish(history, model.state_dict() if config.keep_network else None, config)


def evolve(evolution: Evolution, config: ExperimentConfig, history: History) -> None:
    """SET's regrowth at the start of an epoch: every SET layer moves the weights its last
    pruning marked; the first layer's newborns are scaled by ``input_regrowth_scale``, then
    shown to the instruments."""
    moved = evolution.regrow()[0]
    first = evolution.layers[0]
    if config.input_regrowth_scale != 1:
        with torch.no_grad():
            first.weight[moved] *= config.input_regrowth_scale
    for instrument in history.instruments:
        instrument.after_regrowth(first, moved)


def prune(evolution: Evolution | None, history: History) -> None:
    """SET's pruning at the end of an epoch (``evolution="epoch"``), the instruments shown
    the first layer just before it and just after (what it marked)."""
    first = evolution.layers[0] if evolution is not None else None
    for instrument in history.instruments:
        if first is not None:
            instrument.before_pruning(first)
    if evolution is not None:
        evolution.prune()
    for instrument in history.instruments:
        if first is not None:
            instrument.after_pruning(first)


def environment(
    device: torch.device | None = None, layers: list[tuple[str, SETLayer]] | None = None, batch_size: int = 1
) -> dict[str, Any]:
    """What a run's numbers are made with: thread count, library versions, (on CUDA) the
    GPU, what decides the rounding (:func:`synapses_study.training.rounding.in_effect`) and, given
    the model's named SET ``layers``, the compute path each takes at ``batch_size``
    (``device``: where it trains, default the CPU)."""
    device = device if device is not None else torch.device("cpu")
    import torchvision  # here: slow to import, and only its version is needed

    found = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    if device.type == "cuda":
        found |= {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda}
    found["rounding"] = rounding.in_effect()
    if layers is not None:
        found["layers"] = [f"{name}: {layer.kernel_for(batch_size)}" for name, layer in layers]
    return found


def warn_if_unpinned(found: dict[str, Any]) -> None:
    """Warn when a run starts with the processor's own rounding although pinning was asked
    for (torch had computed before :func:`synapses_study.training.rounding.pin` could act)."""
    if found["rounding"]["pinned"] or rounding.mode() != "pinned" or not rounding.pinnable():
        return
    warnings.warn(
        f"this run rounds as this processor does (torch's CPU capability {found['rounding']['torch_cpu_capability']}), "
        "so it repeats only on this kind of processor: start it with python -m synapses_study.training.run, or set "
        f"{' '.join(f'{k}={v}' for k, v in rounding.PINNED_ENV.items())} before Python starts",
        stacklevel=3,
    )


def _progress_bar(config: ExperimentConfig, done: int, enabled: bool):
    if not enabled:
        return None
    return tqdm(total=config.epochs, initial=done, desc=config.run_id(), unit="epoch", dynamic_ncols=True)
