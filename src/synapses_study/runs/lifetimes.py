"""Every first-layer connection's life: birth, weight before each pruning, death.

A run with ``record_lifetimes`` keeps, for the first SET layer, what an age-structured
account of the topology needs and the per-pixel counts cannot give: which connections are
newborns (regrown at the start of the epoch) and which are established, how large each was
born, how each weight stood against the pruning threshold, and when it was pruned.

Slots: the layer stores ``n_params`` weights in fixed slots; evolution gives a pruned
slot a new connection (pair and weight), so a slot's life is a sequence of connections.
Epoch ``e`` (1-based) trains, then prunes; the evolution at the start of epoch ``e + 1``
refills exactly the slots pruned at epoch ``e``, in increasing slot order.

``lifetimes.npz`` holds, for a run of ``E`` recorded epochs and ``n`` slots:

* ``initial_keys`` ``(n,)`` int32, ``initial_weights`` ``(n,)`` float16: the connections
  at initialisation, keys ``output * in_features + input``;
* ``weights`` ``(E, n)`` float16: each slot's weight just before epoch ``e``'s pruning;
* ``pruned`` ``(E, ceil(n / 8))`` uint8: bit-packed (``np.packbits``) mask of the slots
  that pruning removed;
* ``thresholds`` ``(E, 2)`` float32: the largest pruned weight among the non-negative ones
  and the largest pruned magnitude among the negative ones (0 where none was pruned);
* ``born_keys`` int32 and ``born_weights`` float16, flat: the new pairs and initial weights
  of each evolution in turn (epochs 2 .. E), ``born_offsets`` ``(E,)`` int64 where each
  evolution's entries start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synapses import SETLayer

from .run_files import DamagedFileError, npz_bytes, read_npz, to_bytes, write_atomic


@dataclass
class LifetimeRecord:
    """The record of a run so far (see the module's docstring for the arrays)."""

    initial_keys: np.ndarray
    initial_weights: np.ndarray
    weights: list[np.ndarray] = field(default_factory=list)
    pruned: list[np.ndarray] = field(default_factory=list)
    thresholds: list[np.ndarray] = field(default_factory=list)
    born_keys: list[np.ndarray] = field(default_factory=list)
    born_weights: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def start(cls, layer: SETLayer) -> LifetimeRecord:
        """The record of ``layer`` at initialisation."""
        return cls(_keys(layer), layer.weight.detach().cpu().numpy().astype(np.float16))

    @property
    def epochs(self) -> int:
        return len(self.weights)

    def record_births(self, layer: SETLayer, moved: torch.Tensor) -> None:
        """After an evolution: ``moved`` ``(k,)`` are the refilled slots, in increasing order."""
        moved = moved.cpu()
        self.born_keys.append(_keys(layer)[moved.numpy()])
        self.born_weights.append(layer.weight.detach().cpu()[moved].numpy().astype(np.float16))

    def record_pruning(self, weights_before: torch.Tensor, pruned: torch.Tensor) -> None:
        """``weights_before`` ``(n,)`` the weights just before pruning; ``pruned`` ``(n,)`` bool."""
        weights_before, pruned = weights_before.detach().cpu(), pruned.cpu()
        positive = weights_before[pruned & (weights_before >= 0)]
        negative = weights_before[pruned & (weights_before < 0)]
        self.thresholds.append(
            np.array(
                [
                    float(positive.max()) if len(positive) else 0.0,
                    float(-negative.min()) if len(negative) else 0.0,
                ],
                dtype=np.float32,
            )
        )
        self.weights.append(weights_before.numpy().astype(np.float16))
        self.pruned.append(np.packbits(pruned.numpy()))

    def truncated(self, epochs: int) -> LifetimeRecord:
        """The record of the first ``epochs`` epochs (what a checkpoint of that epoch resumes)."""
        if self.epochs < epochs:
            raise RuntimeError(f"the lifetime record holds {self.epochs} epochs, the checkpoint {epochs}")
        return LifetimeRecord(
            self.initial_keys,
            self.initial_weights,
            self.weights[:epochs],
            self.pruned[:epochs],
            self.thresholds[:epochs],
            self.born_keys[: max(epochs - 1, 0)],
            self.born_weights[: max(epochs - 1, 0)],
        )

    def pruned_mask(self, epoch: int) -> np.ndarray:
        """``(n,)`` bool: the slots pruned at ``epoch`` (1-based)."""
        return np.unpackbits(self.pruned[epoch - 1], count=len(self.initial_keys)).astype(bool)

    def keys_during(self, epoch: int) -> np.ndarray:
        """``(n,)`` the pairs (keys) of the slots while epoch ``epoch`` (1-based) trains."""
        keys = self.initial_keys.copy()
        for e in range(2, epoch + 1):
            keys[self.pruned_mask(e - 1)] = self.born_keys[e - 2]
        return keys

    def birth_epochs(self, epoch: int) -> np.ndarray:
        """``(n,)`` the epoch at whose start each slot's connection during ``epoch`` was born
        (1 for the initial connections)."""
        born = np.ones(len(self.initial_keys), dtype=np.int64)
        for e in range(2, epoch + 1):
            born[self.pruned_mask(e - 1)] = e
        return born

    def arrays(self) -> dict[str, np.ndarray]:
        offsets = np.cumsum([0] + [len(k) for k in self.born_keys])[:-1] if self.born_keys else np.zeros(0, np.int64)
        n = len(self.initial_keys)
        return {
            "initial_keys": self.initial_keys,
            "initial_weights": self.initial_weights,
            "weights": np.stack(self.weights) if self.weights else np.zeros((0, n), np.float16),
            "pruned": np.stack(self.pruned) if self.pruned else np.zeros((0, (n + 7) // 8), np.uint8),
            "thresholds": np.stack(self.thresholds) if self.thresholds else np.zeros((0, 2), np.float32),
            "born_keys": np.concatenate(self.born_keys) if self.born_keys else np.zeros(0, np.int32),
            "born_weights": np.concatenate(self.born_weights) if self.born_weights else np.zeros(0, np.float16),
            "born_offsets": np.asarray(offsets, dtype=np.int64),
        }


def _keys(layer: SETLayer) -> np.ndarray:
    # the record stores keys as int32 (half the file); a layer with more pairs cannot be recorded
    if layer.in_features * layer.out_features > 2**31:
        raise ValueError(
            f"a lifetime record keys connections in int32; this layer has "
            f"{layer.in_features * layer.out_features} pairs (at most 2**31): record a smaller layer"
        )
    return layer.connection_keys().cpu().numpy().astype(np.int32)


def write_lifetimes(path: Path, record: LifetimeRecord, final: bool = False) -> None:
    """Atomically; uncompressed while the run is in progress (it is rewritten every epoch
    and grows to megabytes), LZMA once ``final``."""
    arrays: dict[str, Any] = record.arrays()  # (numpy's stub would match a key to allow_pickle)
    data = npz_bytes(arrays, final=True) if final else to_bytes(lambda f: np.savez(f, **arrays))
    write_atomic(path, data)


def read_lifetimes(path: Path) -> LifetimeRecord:
    """The record written by :func:`write_lifetimes`, checked for consistent shapes.

    Raises:
        DamagedFileError: a damaged file, or arrays whose shapes do not fit together.
    """
    arrays = read_npz(path)
    try:
        n = len(arrays["initial_keys"])
        epochs = len(arrays["weights"])
        offsets = [int(o) for o in arrays["born_offsets"]] + [len(arrays["born_keys"])]
        consistent = (
            arrays["weights"].shape[1:] == (n,)
            and arrays["pruned"].shape == (epochs, (n + 7) // 8)
            and arrays["thresholds"].shape == (epochs, 2)
            and len(arrays["born_weights"]) == len(arrays["born_keys"])
            and len(offsets) - 1 in (max(epochs - 1, 0), epochs)
            and offsets == sorted(offsets)
        )
    except KeyError as missing:
        raise DamagedFileError(f"{path} lacks the array {missing}; delete {path.parent} to rerun that run") from None
    if not consistent:
        raise DamagedFileError(f"{path}: its arrays do not fit together; delete {path.parent} to rerun that run")
    record = LifetimeRecord(arrays["initial_keys"], arrays["initial_weights"])
    record.weights, record.pruned, record.thresholds = (
        list(arrays["weights"]),
        list(arrays["pruned"]),
        list(arrays["thresholds"]),
    )
    record.born_keys = [arrays["born_keys"][a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    record.born_weights = [arrays["born_weights"][a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    for births, pruned_before in zip(record.born_keys, record.pruned):
        if len(births) != int(np.unpackbits(pruned_before, count=n).sum()):
            raise DamagedFileError(f"{path}: an evolution's births do not match the slots pruned before it")
    return record
