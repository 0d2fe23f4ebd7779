"""Regrowth rules: where an evolution step puts the connections its pruning removed.

A rule is an object passed to :class:`~synapses.SETLayer`, :func:`~synapses.sparsify` or
:class:`~synapses.Evolution` (``regrowth=``); the names ``"uniform"``, ``"near_parents"``
and ``"gradient"`` stand for :class:`Uniform`, :class:`NearParents` and :class:`Gradient`.
A new rule is one subclass of :class:`RegrowthRule` that overrides :meth:`~RegrowthRule.place`:
it places as many of the ``n`` new connections as it likes and the rest are drawn
uniformly among the free pairs, so that every step moves exactly ``n`` weights.

Pairs are flat keys ``out_index * in_features + in_index`` (as in :mod:`synapses.pairs`).
"""

from __future__ import annotations

import weakref
from functools import partial
from typing import TYPE_CHECKING

import torch

from . import distributed
from .deprecation import warn_once
from .pairs import largest_gradient_pairs, sample_free_pairs, sample_near_parents

if TYPE_CHECKING:
    from .layer import SETLayer


class RegrowthRule:
    """Base class: :meth:`grow` = the keys :meth:`place` chooses, then uniform draws for the rest.

    Attributes:
        name: how ``repr`` and the layer's ``extra_repr`` call the rule.
    """

    name = "custom"

    def attach(self, layer: SETLayer) -> None:
        """Called when ``layer`` takes this rule (built with it, or given it by
        :class:`~synapses.Evolution`): a rule that must watch training, as :class:`Gradient`
        does, registers its hooks here. Default: nothing."""

    def place(self, layer: SETLayer, kept_keys: torch.Tensor, kept_weights: torch.Tensor, n: int) -> torch.Tensor:
        """Up to ``n`` new keys, none in ``kept_keys`` and none twice (default: none).

        Args:
            layer: the layer being evolved (its sizes, ``generator``, ``input_grid``...).
            kept_keys: ``(m,)`` int64 keys of the connections the pruning kept.
            kept_weights: ``(m,)`` their weights.
            n: how many connections move.

        Returns:
            ``(j,)`` int64 keys, ``j <= n``, on ``kept_keys``' device.
        """
        return kept_keys.new_empty(0)

    def grow(self, layer: SETLayer, kept_keys: torch.Tensor, kept_weights: torch.Tensor, n: int) -> torch.Tensor:
        """``(n,)`` distinct free keys: :meth:`place`'s, then uniform draws among the pairs
        still free (with the layer's ``generator``)."""
        placed = self.place(layer, kept_keys, kept_weights, n)
        # the built-in places return valid keys by construction; any other place (a new
        # rule, or a subclass of a built-in one that overrides it) is checked every time
        if type(self).place not in _TRUSTED_PLACES:
            self._check(placed, kept_keys, n, layer.in_features * layer.out_features)
        rest = sample_free_pairs(
            torch.cat([kept_keys, placed]),
            n - placed.numel(),
            layer.in_features * layer.out_features,
            generator=layer.generator,
        )
        return torch.cat([placed, rest])

    def _check(self, placed: torch.Tensor, kept_keys: torch.Tensor, n: int, n_pairs: int) -> None:
        where = f"{type(self).__name__}.place"
        if not isinstance(placed, torch.Tensor):
            raise ValueError(f"{where} must return a 1-d int64 tensor of keys, got {type(placed).__name__}")
        if placed.dtype != torch.int64 or placed.dim() != 1:
            raise ValueError(
                f"{where} must return a 1-d int64 tensor of keys, got {placed.dtype} of shape {tuple(placed.shape)}"
            )
        if placed.numel() > n:
            raise ValueError(f"{where} returned {placed.numel()} keys for {n} connections to place")
        if placed.numel() and (int(placed.min()) < 0 or int(placed.max()) >= n_pairs):
            raise ValueError(f"{where} returned a key outside [0, {n_pairs})")
        if torch.unique(placed).numel() != placed.numel():
            raise ValueError(f"{where} returned a key twice")
        if bool(torch.isin(placed, kept_keys).any()):
            raise ValueError(f"{where} returned a pair that is already connected")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Uniform(RegrowthRule):
    """SET's rule: every new connection uniform among the free pairs."""

    name = "uniform"


class NearParents(RegrowthRule):
    """A fraction ``fraction`` of the new connections next to strong kept ones: a parent is
    drawn with probability proportional to ``|weight|`` and its child keeps the parent's
    output and takes a neighbouring input (a neighbouring pixel on ``input_grid =
    (height, width)``, else the input index +-1); see
    :func:`synapses.pairs.sample_near_parents`. The rest are uniform."""

    name = "near_parents"

    def __init__(self, fraction: float = 0.5, input_grid: tuple[int, int] | None = None) -> None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ValueError(f"parent fraction must be a number in [0, 1], got {fraction!r}")
        if input_grid is not None and (
            not isinstance(input_grid, (tuple, list))
            or len(input_grid) != 2
            or any(isinstance(side, bool) or not isinstance(side, int) or side < 1 for side in input_grid)
        ):
            raise ValueError(f"input_grid must be (height, width), two positive integers, got {input_grid!r}")
        self.fraction = fraction
        self.input_grid = (input_grid[0], input_grid[1]) if input_grid is not None else None

    def attach(self, layer: SETLayer) -> None:
        """Refuse a layer whose inputs do not fill this rule's ``input_grid``: its children
        would be keys of pixels the layer does not have."""
        self._grid_of(layer)

    def _grid_of(self, layer: SETLayer) -> tuple[int, int] | None:
        if self.input_grid is None:
            return layer.input_grid
        height, width = self.input_grid
        if height * width != layer.in_features:
            raise ValueError(
                f"NearParents(input_grid={self.input_grid}) has {height * width} pixels but a SETLayer has "
                f"in_features={layer.in_features}; give this rule to the layer whose inputs are that image only "
                "(SETLayer(..., regrowth=NearParents(fraction, input_grid=...))), a grid-less NearParents to others"
            )
        return self.input_grid

    def place(self, layer: SETLayer, kept_keys: torch.Tensor, kept_weights: torch.Tensor, n: int) -> torch.Tensor:
        grid = self._grid_of(layer)
        return sample_near_parents(
            kept_keys,
            kept_weights,
            round(self.fraction * n),
            layer.in_features,
            kept_keys,
            input_grid=grid,
            generator=layer.generator,
        )

    def __repr__(self) -> str:
        return f"NearParents(fraction={self.fraction}" + (
            f", input_grid={self.input_grid})" if self.input_grid else ")"
        )


class Gradient(RegrowthRule):
    """RigL's rule: the free pairs whose weight gradient on the last training batch is
    largest in magnitude, computed a block of outputs at a time
    (:func:`synapses.pairs.largest_gradient_pairs`).

    Under a data-parallel :class:`~synapses.Evolution` (``torch.distributed``), the gradient
    blocks are summed over ranks before choosing, so every rank takes the same pairs: those of
    the whole global batch.

    The rule keeps each attached layer's last training batch: a forward hook notes the
    ``(batch, in_features)`` input and, when the backward pass reaches the output, its
    ``(batch, out_features)`` gradient. A forward pass without a backward pass (or outside
    training) leaves the last pair as it was.
    """

    name = "gradient"

    def __init__(self) -> None:
        # layer -> (inputs, output gradients) of its last training batch; weak, so that a
        # rule shared by many layers never keeps a deleted one alive
        self._batches: weakref.WeakKeyDictionary[SETLayer, tuple[torch.Tensor, torch.Tensor]] = (
            weakref.WeakKeyDictionary()
        )

    def attach(self, layer: SETLayer) -> None:
        if not any(getattr(hook, "__self__", None) is self for hook in layer._forward_hooks.values()):
            layer.register_forward_hook(self._watch)

    def _watch(self, layer: SETLayer, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if layer.training and output.requires_grad:
            inputs = args[0].detach().reshape(-1, layer.in_features).to(layer.weight.dtype)
            output.register_hook(partial(self._record, layer, inputs))

    def _record(self, layer: SETLayer, inputs: torch.Tensor, grad: torch.Tensor) -> None:
        self._batches[layer] = (inputs, grad.detach().reshape(-1, layer.out_features))

    def place(self, layer: SETLayer, kept_keys: torch.Tensor, kept_weights: torch.Tensor, n: int) -> torch.Tensor:
        if layer not in self._batches:
            raise RuntimeError(
                "gradient regrowth needs the last training batch's gradients: give the rule to the layer "
                "(regrowth=synapses.Gradient()) or to Evolution before training, and run a training forward and "
                "backward pass before evolving"
            )
        inputs, grad_outputs = self._batches[layer]
        # data parallel: each rank holds its slice of the batch; the scores are summed over
        # ranks (a block at a time) so that every rank chooses the same pairs, the whole batch's
        reduce = distributed.all_reduce_sum if distributed.syncing() else None
        return largest_gradient_pairs(kept_keys, n, inputs, grad_outputs, reduce=reduce)

    def __getstate__(self) -> dict:
        return {}  # a pickled or copied rule starts without batches (weak references do not pickle)

    def __setstate__(self, state: dict) -> None:
        self.__init__()  # type: ignore[misc]


# the places that return valid keys by construction (Uniform places none)
_TRUSTED_PLACES = (RegrowthRule.place, NearParents.place, Gradient.place)

NAMED_RULES = {"uniform": Uniform, "near_parents": NearParents, "gradient": Gradient}


def as_rule(
    regrowth: str | RegrowthRule | None, parent_fraction: float | None = None, stacklevel: int = 4
) -> RegrowthRule:
    """``regrowth`` itself when it is a :class:`RegrowthRule`, :class:`Uniform` for ``None``,
    or the rule a name stands for (``"near_parents"`` with ``parent_fraction``, else the
    rule's own default): names are a deprecated spelling and warn once (``stacklevel``: the
    user's frame, counted from :func:`warnings.warn`)."""
    if isinstance(regrowth, RegrowthRule):
        return regrowth
    if regrowth is None:
        return Uniform()
    if isinstance(regrowth, str) and regrowth in NAMED_RULES:
        rule = NAMED_RULES[regrowth]
        warn_once(f"regrowth={regrowth!r}", f"regrowth=synapses.{rule.__name__}()", stacklevel=stacklevel)
        if regrowth == "near_parents" and parent_fraction is not None:
            return NearParents(parent_fraction)
        return rule()
    raise ValueError(
        f"regrowth must be a synapses.RegrowthRule (synapses.Uniform(), synapses.NearParents(), synapses.Gradient() "
        f"or your own), got {regrowth!r}"
    )
