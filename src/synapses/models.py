"""The MNIST networks of the original demo, built from SETLayers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .deprecation import warn_once
from .evolution import Evolution
from .layer import DEFAULT_EPSILON, DEFAULT_ZETA, Compute, Regrowth, SETLayer
from .regrowth import NearParents, RegrowthRule, as_rule


class SparseNet(nn.Module):
    """784-512-128-10 perceptron: two SET layers with ReLU, a dense readout, log-softmax.

    23,226 parameters with the defaults (the dense equivalent has about 468k). Evolution is
    driven from outside, once per epoch: :class:`~synapses.Evolution`'s ``prune()`` after
    training and ``regrow()`` before the next epoch (or, as in synapses 0.0.13,
    :meth:`zero_connections` and :meth:`evolve_connections`).

    Args:
        sizes: ``(input, hidden..., output)`` widths; every layer but the last is a SETLayer.
        epsilon: passed to each SETLayer, or a sequence with one value per SETLayer.
        zeta: passed to each SETLayer.
        generator: passed to each SETLayer.
        compute: passed to each SETLayer (``"auto"``, ``"fixed"``, ``"sparse"`` or ``"dense"``).
        dropout: probability of zeroing each hidden unit after its ReLU, in training.
        input_regrowth: the first SET layer's regrowth rule (see :class:`SETLayer`; the
            others regrow uniformly): the input layer is the one whose inputs have a geometry
            (``NearParents(fraction, input_grid=(28, 28))``) in which "next to" means something.
        parent_fraction, input_grid: deprecated spellings of that rule's settings (warn once).

    Shape:
        Input ``(batch, *)`` with ``prod(*) == sizes[0]`` (e.g. ``(batch, 1, 28, 28)``);
        output ``(batch, sizes[-1])`` log-probabilities.
    """

    def __init__(
        self,
        sizes: tuple[int, ...] = (784, 512, 128, 10),
        epsilon: float | Sequence[float] = DEFAULT_EPSILON,
        zeta: float = DEFAULT_ZETA,
        *,
        generator: torch.Generator | None = None,
        compute: Compute = "auto",
        dropout: float = 0.0,
        input_regrowth: Regrowth | None = None,
        parent_fraction: float | None = None,
        input_grid: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if len(sizes) < 3:
            raise ValueError(f"sizes needs an input, at least one hidden and an output width, got {sizes!r}")
        epsilons = tuple(epsilon) if isinstance(epsilon, Sequence) else (epsilon,) * (len(sizes) - 2)
        if len(epsilons) != len(sizes) - 2:
            raise ValueError(f"epsilon has {len(epsilons)} values for {len(sizes) - 2} SET layers")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.sizes = tuple(sizes)
        self.dropout = dropout
        first_rule = _input_rule(input_regrowth, parent_fraction, input_grid, sizes[0])
        self.set_layers = nn.ModuleList(
            SETLayer(
                a,
                b,
                epsilon=eps,
                zeta=zeta,
                generator=generator,
                compute=compute,
                regrowth=first_rule if i == 0 else None,
            )
            for i, (a, b, eps) in enumerate(zip(sizes[:-2], sizes[1:-1], epsilons))
        )
        self.readout = nn.Linear(sizes[-2], sizes[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.set_layers:
            x = self._hidden_activation(layer(x))
        return F.log_softmax(self.readout(x), dim=1)

    def _hidden_activation(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return F.dropout(x, self.dropout, self.training) if self.dropout else x

    def zero_connections(self) -> None:
        """Mark and zero the weights each SET layer will move."""
        for layer in self.sparse_layers():
            layer.zero_connections()

    def evolve_connections(
        self, init: bool = True, optimizer: torch.optim.Optimizer | None = None
    ) -> list[torch.Tensor]:
        """Move each SET layer's marked weights to new connections; returns each layer's
        ``(k,)`` moved slots (see :meth:`SETLayer.evolve_connections`)."""
        return [layer.evolve_connections(init=init, optimizer=optimizer) for layer in self.sparse_layers()]

    def sparse_layers(self) -> list[SETLayer]:
        """``set_layers`` as a typed list."""
        return [cast(SETLayer, layer) for layer in self.set_layers]


def _input_rule(
    regrowth: Regrowth | None, parent_fraction: float | None, input_grid: tuple[int, int] | None, n_inputs: int
) -> RegrowthRule:
    """The first SET layer's rule from :class:`SparseNet`'s arguments, the deprecated
    ``parent_fraction`` and ``input_grid`` folded into it (each warns once, naming SparseNet)."""
    if parent_fraction is not None:
        warn_once("SparseNet(parent_fraction=...)", "input_regrowth=synapses.NearParents(fraction)", stacklevel=4)
        if not 0 <= parent_fraction <= 1:
            raise ValueError(f"parent_fraction must be in [0, 1], got {parent_fraction!r}")
    rule = as_rule(regrowth, parent_fraction, stacklevel=5)
    if input_grid is not None:
        warn_once(
            "SparseNet(input_grid=...)",
            "input_regrowth=synapses.NearParents(fraction, input_grid=(height, width))",
            stacklevel=4,
        )
        grid = NearParents(input_grid=input_grid).input_grid  # checks the form: two positive integers
        assert grid is not None
        if grid[0] * grid[1] != n_inputs:
            raise ValueError(f"input_grid {input_grid!r} does not have {n_inputs} pixels (the net's input size)")
        if isinstance(rule, NearParents) and rule.input_grid is None:
            rule = NearParents(rule.fraction, input_grid=grid)
    return rule


class EvolNet(SparseNet):
    """SparseNet that evolves during training: each SET layer, on each training forward
    pass, evolves with probability ``evolution_proba`` before computing its output (an
    :class:`~synapses.Evolution` with ``per_pass``, held as ``evolution``).

    As in the original, the constructor's ``evolution_proba`` is shared among the SET
    layers (the attribute holds the per-layer probability, ``evolution_proba / 2`` for the
    default net); ``per_layer=True`` takes the per-layer probability itself.
    No optimizer is handed to the layers, so momentum buffers are not reset (as the
    original did); pass ``optimizer=`` (or set ``.optimizer``) to change that.
    """

    evolution: Evolution

    def __init__(
        self,
        evolution_proba: float,
        sizes: tuple[int, ...] = (784, 512, 128, 10),
        epsilon: float | Sequence[float] = DEFAULT_EPSILON,
        zeta: float = DEFAULT_ZETA,
        *,
        generator: torch.Generator | None = None,
        compute: Compute = "auto",
        optimizer: torch.optim.Optimizer | None = None,
        dropout: float = 0.0,
        per_layer: bool = False,
        input_regrowth: Regrowth | None = None,
        parent_fraction: float | None = None,
        input_grid: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(
            sizes,
            epsilon,
            zeta,
            generator=generator,
            compute=compute,
            dropout=dropout,
            input_regrowth=input_regrowth,
            parent_fraction=parent_fraction,
            input_grid=input_grid,
        )
        if not 0 <= evolution_proba <= 1:
            raise ValueError(f"evolution_proba must be in [0, 1], got {evolution_proba!r}")
        self.generator = generator
        per_pass = evolution_proba if per_layer else evolution_proba / len(self.set_layers)
        self.evolution = Evolution(self, optimizer, per_pass=per_pass, reset_optimizer_state=optimizer is not None)

    @property
    def evolution_proba(self) -> float:
        """Each SET layer's probability of evolving on a training forward pass."""
        assert self.evolution.per_pass is not None
        return self.evolution.per_pass

    @evolution_proba.setter
    def evolution_proba(self, proba: float) -> None:
        if not 0 <= proba <= 1:
            raise ValueError(f"evolution_proba must be in [0, 1], got {proba!r}")
        self.evolution.per_pass = proba

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer whose state of moved weights is reset (``None``: none is)."""
        return self.evolution.optimizer if self.evolution.reset_optimizer_state else None

    @optimizer.setter
    def optimizer(self, optimizer: torch.optim.Optimizer | None) -> None:
        self.evolution.optimizer, self.evolution.reset_optimizer_state = optimizer, optimizer is not None


class DenseNet(nn.Module):
    """The dense baseline of :class:`SparseNet`: ``nn.Linear`` layers of the same widths,
    ReLU (and dropout) after each hidden layer, log-softmax.

    Args:
        sizes: ``(input, hidden..., output)`` widths.
        dropout: probability of zeroing each hidden unit after its ReLU, in training.

    Shape:
        Input ``(batch, *)`` with ``prod(*) == sizes[0]``; output ``(batch, sizes[-1])``.
    """

    def __init__(self, sizes: tuple[int, ...] = (784, 512, 128, 10), *, dropout: float = 0.0) -> None:
        super().__init__()
        if len(sizes) < 3:
            raise ValueError(f"sizes needs an input, at least one hidden and an output width, got {sizes!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.sizes = tuple(sizes)
        self.dropout = dropout
        self.hidden_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-2], sizes[1:-1]))
        self.readout = nn.Linear(sizes[-2], sizes[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden_layers:
            x = F.relu(layer(x))
            if self.dropout:
                x = F.dropout(x, self.dropout, self.training)
        return F.log_softmax(self.readout(x), dim=1)
