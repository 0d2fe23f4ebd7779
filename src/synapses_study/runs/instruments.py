"""Instruments: the records a run keeps of its first SET layer beside its metrics.

An instrument is made for a run whose configuration asks for it (:meth:`Instrument.wanted`),
starts with the fresh network or resumes from its own file, attaches to the layer it
watches, is fed at the engine's points (after an epoch's training, around the pruning, after
the regrowth), and writes one file of the run folder. The engine and the run folder handle
every instrument alike, so a new record is one subclass here, listed in :data:`INSTRUMENTS`,
and one config field (docs/developing.md's recipe).

Instances: :class:`PruningInstrument` (``pruning.npz``), :class:`LifetimeInstrument`
(``lifetimes.npz``) and :class:`GradientInstrument` (``gradients.npz``).

The gradient record: how much gradient each input pixel's first-layer weights receive. A
connection from pixel ``i`` gets the gradient ``delta_j * x_i`` summed over a batch, so the
squared gradient of a pixel's weights measures how hard training pushes them: nothing for a
pixel that is 0 in every image (blank pixels under ``inputs="unit"`` or ``"scaled"``), most
for pixels that are often inked and informative. A forecast of the topology needs this
exposure per pixel and epoch; the per-pixel counts and the pruning record cannot give it.

:class:`GradientRecorder` adds, after every backward pass, each first-layer weight's squared
gradient to its input pixel's total (in float64, in a fixed order, so the record is as
deterministic as the run); :class:`GradientInstrument` takes the totals once per epoch into
``gradients.npz``.
The gradient is the loss's, as backward leaves it: coupled weight decay (SGD's
``weight_decay``, added inside ``optimizer.step()``) and decoupled decay are not in it, and
neither is momentum; an L1 penalty, added to the loss, is.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from synapses import SETLayer

from ..measures.analysis import abs_weight_sum
from ..measures.topology import pixel_counts
from ..setup.config import ExperimentConfig
from .lifetimes import LifetimeRecord, read_lifetimes, write_lifetimes
from .run_files import DamagedFileError, read_gradients, read_pruning, write_gradients, write_pruning


class Instrument:
    """One record of a run's first SET layer. Subclasses set :attr:`file_name`, say when a
    configuration wants them, and override the hooks they need (each does nothing here)."""

    file_name: ClassVar[str]

    def __init__(self, config: ExperimentConfig) -> None:
        """A fresh record for a run of ``config`` (nothing recorded yet)."""

    @classmethod
    def wanted(cls, config: ExperimentConfig) -> bool:
        """Whether a run of ``config`` keeps this record."""
        raise NotImplementedError

    def start(self, layer: SETLayer) -> None:
        """A fresh run: ``layer`` as initialised, before any training."""

    def resume(self, path: Path, epochs: int) -> None:
        """A resumed run: the first ``epochs`` epochs of the record in ``path``.

        Raises:
            DamagedFileError: the file holds fewer epochs than the checkpoint.
        """
        raise NotImplementedError  # every record must come back, or a resumed run restarts it empty

    def attach(self, layer: SETLayer) -> None:
        """Training starts (fresh or resumed): watch ``layer`` (register hooks)."""

    def after_training(self, layer: SETLayer) -> None:
        """An epoch's training is done (before its pruning)."""

    def before_pruning(self, layer: SETLayer) -> None:
        """The pruning at the end of an epoch is about to mark ``layer.pruned``."""

    def after_pruning(self, layer: SETLayer) -> None:
        """``layer.pruned`` marks what the pruning removed (still in place, at 0)."""

    def after_regrowth(self, layer: SETLayer, moved: torch.Tensor) -> None:
        """The ``(k,)`` slots ``moved`` hold the newborns, at their initial weights."""

    def write(self, path: Path, final: bool) -> None:
        """The record so far, to ``path`` (atomically; ``final``: the finished run's form)."""
        raise NotImplementedError

    def close(self) -> None:
        """Training is over (release hooks)."""


def _short(path: Path, held: int, epochs: int) -> DamagedFileError:
    return DamagedFileError(
        f"{path.parent}: {path.name} holds {held} epochs, the checkpoint {epochs}; delete the folder to restart "
        "that run"
    )


class PruningInstrument(Instrument):
    """``pruning.npz``: per epoch and pixel, the connections the pruning removed and (with
    ``record_weight_mass``) the summed ``|weight|`` just before it."""

    file_name = "pruning.npz"

    def __init__(self, config: ExperimentConfig) -> None:
        self.with_weight_mass = config.record_weight_mass
        self.pruned: list[np.ndarray] = []
        self.weight_mass: list[np.ndarray] = []

    @classmethod
    def wanted(cls, config: ExperimentConfig) -> bool:
        return config.record_pruning

    def resume(self, path: Path, epochs: int) -> None:
        pruned, weight_mass = read_pruning(path)
        if len(pruned) < epochs:
            raise _short(path, len(pruned), epochs)
        self.pruned = list(pruned[:epochs])
        self.weight_mass = list(weight_mass[:epochs]) if weight_mass is not None else []

    def before_pruning(self, layer: SETLayer) -> None:
        if self.with_weight_mass:
            self.weight_mass.append(abs_weight_sum(layer.connections, layer.weight, layer.in_features))

    def after_pruning(self, layer: SETLayer) -> None:
        self.pruned.append(pixel_counts(layer.connections[layer.pruned], layer.in_features))

    def write(self, path: Path, final: bool) -> None:
        if self.pruned:
            weight_mass = np.stack(self.weight_mass) if self.weight_mass else None
            write_pruning(path, np.stack(self.pruned), weight_mass, final)


class LifetimeInstrument(Instrument):
    """``lifetimes.npz``: every first-layer connection's birth, weights at pruning and death
    (:mod:`synapses_study.runs.lifetimes`)."""

    file_name = "lifetimes.npz"

    def __init__(self, config: ExperimentConfig) -> None:
        self.record: LifetimeRecord | None = None
        self._weights_before: torch.Tensor | None = None

    @classmethod
    def wanted(cls, config: ExperimentConfig) -> bool:
        return config.record_lifetimes

    def start(self, layer: SETLayer) -> None:
        self.record = LifetimeRecord.start(layer)

    def resume(self, path: Path, epochs: int) -> None:
        record = read_lifetimes(path)
        if record.epochs < epochs:
            raise _short(path, record.epochs, epochs)
        self.record = record.truncated(epochs)

    def before_pruning(self, layer: SETLayer) -> None:
        self._weights_before = layer.weight.detach().clone()

    def after_pruning(self, layer: SETLayer) -> None:
        assert self.record is not None and self._weights_before is not None
        self.record.record_pruning(self._weights_before, layer.pruned)
        self._weights_before = None

    def after_regrowth(self, layer: SETLayer, moved: torch.Tensor) -> None:
        assert self.record is not None
        self.record.record_births(layer, moved)

    def write(self, path: Path, final: bool) -> None:
        assert self.record is not None
        write_lifetimes(path, self.record, final)


class GradientRecorder:
    """Sums ``layer``'s squared weight gradients per input pixel until :meth:`take`.

    Args:
        layer: a SET layer; its ``connections[:, 0]`` name each weight's input pixel when the
            gradient arrives, so evolutions between epochs are followed.
    """

    def __init__(self, layer: SETLayer) -> None:
        self.layer = layer
        self.total = torch.zeros(layer.in_features, dtype=torch.float64, device=layer.weight.device)
        self._handle = layer.weight.register_hook(self._add)

    def _add(self, grad: torch.Tensor) -> None:
        with torch.no_grad():
            self.total.index_add_(0, self.layer.connections[:, 0], grad.detach().double().square())

    def take(self) -> np.ndarray:
        """``(in_features,)`` float32: the totals since the last call, then set to zero."""
        totals = self.total.cpu().numpy().astype(np.float32)
        self.total.zero_()
        return totals

    def close(self) -> None:
        """Stop recording (remove the gradient hook)."""
        self._handle.remove()


class GradientInstrument(Instrument):
    """``gradients.npz``: per epoch, each pixel's summed squared first-layer weight gradients
    (:class:`GradientRecorder`)."""

    file_name = "gradients.npz"

    def __init__(self, config: ExperimentConfig) -> None:
        self.epochs: list[np.ndarray] = []
        self.recorder: GradientRecorder | None = None

    @classmethod
    def wanted(cls, config: ExperimentConfig) -> bool:
        return config.record_gradients

    def attach(self, layer: SETLayer) -> None:
        self.recorder = GradientRecorder(layer)

    def resume(self, path: Path, epochs: int) -> None:
        gradients = read_gradients(path)
        if len(gradients) < epochs:
            raise _short(path, len(gradients), epochs)
        self.epochs = list(gradients[:epochs])

    def after_training(self, layer: SETLayer) -> None:
        assert self.recorder is not None
        self.epochs.append(self.recorder.take())

    def write(self, path: Path, final: bool) -> None:
        if self.epochs:
            write_gradients(path, np.stack(self.epochs), final)

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()


INSTRUMENTS: tuple[type[Instrument], ...] = (PruningInstrument, LifetimeInstrument, GradientInstrument)


def instruments_for(config: ExperimentConfig) -> list[Instrument]:
    """The instruments a run of ``config`` keeps, fresh (not yet started or resumed)."""
    return [kind(config) for kind in INSTRUMENTS if kind.wanted(config)]


def file_names(config: ExperimentConfig) -> list[str]:
    """The files of the instruments a run of ``config`` keeps."""
    return [kind.file_name for kind in INSTRUMENTS if kind.wanted(config)]
