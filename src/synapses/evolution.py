"""Evolution: prune and regrow a model's SETLayers on a cadence, from your own training loop.

    model = synapses.sparsify(model, epsilon=20)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    evolution = synapses.Evolution(model, optimizer, every=len(loader))  # once per epoch, as SET
    for x, y in loader:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
        evolution.step()

The schedule counts optimizer steps: ``evolution.step()`` follows every ``optimizer.step()``.
"""

from __future__ import annotations

import math
import operator
import weakref
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from . import distributed as dist_sync
from .layer import Regrowth, SETLayer
from .optim_state import check_known, plan_reset
from .regrowth import as_rule


def _count(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int (numpy integers too, bools not), at least ``minimum``."""
    try:
        count = operator.index(value) if not isinstance(value, bool) else None  # type: ignore[arg-type]
    except TypeError:
        count = None
    if count is None or count < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise ValueError(f"{name} must be {kind} whole number of steps, got {value!r}")
    return count


@dataclass(frozen=True)
class EverySteps:
    """Evolve after every ``steps``-th optimizer step (``len(loader)``: once per epoch, as SET)."""

    steps: int

    def __post_init__(self) -> None:
        _count("EverySteps(steps)", self.steps)


@dataclass(frozen=True)
class PerPass:
    """Each SETLayer evolves on its own, with ``probability``, just before each training
    forward pass through it (the original EvolNet); the coin comes from the layer's
    ``generator`` (or the driver's own, with ``seed=``)."""

    probability: float

    def __post_init__(self) -> None:
        p = self.probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"PerPass(probability) must be a number in [0, 1], got {p!r}")


@dataclass(frozen=True)
class ByHand:
    """Never of its own accord: the training loop calls :meth:`Evolution.prune` and
    :meth:`Evolution.regrow` (or :meth:`Evolution.evolve`) where it wants them, for
    instance pruning after an epoch, evaluating the pruned network, then regrowing;
    :meth:`Evolution.step` only counts steps."""


Cadence = EverySteps | PerPass | ByHand


# layer -> the Evolution whose per_pass hook it carries (weak: a deleted layer drops out;
# kept off the layer itself so that pickling a model never meets it)
_PER_PASS: weakref.WeakKeyDictionary[SETLayer, Evolution] = weakref.WeakKeyDictionary()
# the Evolutions that reset their optimizer's state of moved weights
_RESETTING: weakref.WeakSet[Evolution] = weakref.WeakSet()


class Evolution:
    """Prune and regrow every :class:`SETLayer` of a model every ``every`` optimizer steps.

    Each evolution zeroes, per layer and sign, the fraction ``zeta`` of weights closest to
    zero and moves them to new connections at once (SET's prune-then-regrow, with no
    training step in between), and resets the optimizer state of the moved weights.
    :meth:`prune` and :meth:`regrow` are the two halves, for a loop that evaluates the
    pruned network between them (as the original SET code does at the end of an epoch);
    :meth:`step` and :meth:`evolve` call both. With ``per_pass=p`` instead of ``every``,
    each SETLayer evolves on its own, with probability ``p``, just before each training
    forward pass through it (the original EvolNet); the coin is drawn from the layer's
    ``generator``.

    Args:
        model: a module holding SETLayers (e.g. from :func:`synapses.sparsify`).
        optimizer: the optimizer that updates them; its state of moved weights is reset.
            ``None`` only with ``reset_optimizer_state=False``.
        every: optimizer steps between evolutions (``len(loader)``: once per epoch); short
            for ``cadence=EverySteps(every)``.
        per_pass: instead of ``every``, each layer's probability of evolving on each
            training forward pass; short for ``cadence=PerPass(per_pass)``.
        cadence: when evolutions happen, as an object: :class:`EverySteps`,
            :class:`PerPass` or :class:`ByHand` (the loop calls :meth:`prune` and
            :meth:`regrow` itself). Exactly one of ``every``, ``per_pass`` and ``cadence``.
        zeta: fraction moved per evolution (default: each layer's own ``zeta``).
        schedule: ``"constant"``, or ``"cosine"``: ``zeta`` decays as
            ``zeta * (1 + cos(pi * t / total_steps)) / 2`` over the steps ``t`` (RigL).
        total_steps: length of the cosine schedule, and the step after which no evolution
            happens (optional for ``"constant"``; with ``per_pass``, no layer evolves once
            :meth:`step` has counted ``total_steps``).
        regrowth: the regrowth rule of every evolution, a name or a
            :class:`~synapses.regrowth.RegrowthRule` (default: each layer's own); it is
            attached to every layer here, so a rule that watches training (``"gradient"``)
            needs the training that follows, not layers built with it.
        init: draw moved weights from the layer's initialisation (SET); ``False``: start
            them at 0 (RigL).
        reset_optimizer_state: reset ``optimizer``'s state of moved weights (``False``:
            they keep their old momentum, as the original EvolNet did).
        seed: draw every evolution (new pairs, their initial weights, ``per_pass``'s coins)
            from a generator of this driver's own, ``self.generator``, seeded with it,
            instead of each layer's ``generator`` or torch's default one.
        distributed: data parallel (``torch.distributed``, e.g. under
            ``DistributedDataParallel``): the driver's own generator gets rank 0's seed
            (``seed``, else one derived from rank 0's ``torch.initial_seed()``), broadcast
            once here, whatever the ranks' other seeds; after each evolution every rank's
            connections are compared (a 64-bit hash per layer) and a difference raises,
            naming the layer and the ranks; gradient regrowth sums its scores over ranks.
            ``None`` (default): when a default process group of more than one rank is
            initialised, so build the Evolution after ``init_process_group``, on every rank.

    Raises:
        ValueError: no SETLayer in ``model``, a SETLayer whose weight ``optimizer`` does not
            update, ``distributed=True`` without a process group, or bad arguments.
        UnknownOptimizerStateError: an optimizer whose state reset is not known (see
            :func:`synapses.register_reset_rule`).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        *,
        every: int | None = None,
        per_pass: float | None = None,
        cadence: Cadence | None = None,
        zeta: float | None = None,
        schedule: Literal["constant", "cosine"] = "constant",
        total_steps: int | None = None,
        regrowth: Regrowth | None = None,
        init: bool = True,
        reset_optimizer_state: bool = True,
        seed: int | None = None,
        distributed: bool | None = None,
    ) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, SETLayer)]
        if not self.layers:
            raise ValueError(
                f"Evolution: {type(model).__name__} has no SETLayer (sparsify it first: synapses.sparsify(model, ...))"
            )
        names = {id(m): name for name, m in model.named_modules()}
        if optimizer is not None or reset_optimizer_state:
            if not isinstance(optimizer, torch.optim.Optimizer):
                raise ValueError(
                    f"Evolution: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
                )
            check_known(optimizer)
            updated = {id(p) for group in optimizer.param_groups for p in group["params"]}
            for layer in self.layers:
                if id(layer.weight) not in updated:
                    raise ValueError(
                        f"Evolution: the optimizer does not update the weight of SETLayer {names[id(layer)]!r} (build "
                        "it after sparsify, from model.parameters())"
                    )
                plan_reset(optimizer, layer.weight)  # optimizer state of a kind nobody can reset: refuse now
        given = [value for value in (every, per_pass, cadence) if value is not None]
        if len(given) != 1:
            raise ValueError(
                "Evolution: give one of every= (optimizer steps between evolutions), per_pass= (a probability per "
                "forward pass) or cadence= (synapses.EverySteps, PerPass or ByHand), got "
                f"every={every!r}, per_pass={per_pass!r}, cadence={cadence!r}"
            )
        if per_pass is not None and (
            isinstance(per_pass, bool) or not isinstance(per_pass, (int, float)) or not 0 <= per_pass <= 1
        ):
            raise ValueError(f"per_pass must be a probability, a number in [0, 1], got {per_pass!r}")
        if every is not None:
            cadence = EverySteps(_count("every", every))
        elif per_pass is not None:
            cadence = PerPass(per_pass)
        elif not isinstance(cadence, (EverySteps, PerPass, ByHand)):
            raise ValueError(
                f"Evolution: cadence must be synapses.EverySteps(k), PerPass(p) or ByHand(), got {cadence!r}"
            )
        every = cadence.steps if isinstance(cadence, EverySteps) else None
        per_pass = cadence.probability if isinstance(cadence, PerPass) else None
        if per_pass is not None:
            for layer in self.layers:
                if layer in _PER_PASS:
                    raise ValueError(
                        f"Evolution: SETLayer {names[id(layer)]!r} already evolves per pass under another Evolution; "
                        "call that one's close() first (two would evolve it twice per pass)"
                    )
        every = _count("every", every) if every is not None else 0
        if total_steps is not None:
            total_steps = _count("total_steps", total_steps)
        if zeta is not None and not 0 <= zeta <= 1:
            raise ValueError(f"zeta must be in [0, 1], got {zeta!r}")
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
        if schedule == "cosine" and total_steps is None:
            raise ValueError("schedule='cosine' needs total_steps (the schedule's length in optimizer steps)")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
            raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        ranks = dist_sync.world_size()
        if distributed and ranks == 1:
            raise ValueError(
                "Evolution(distributed=True) needs torch.distributed's default process group of more than one rank; "
                "call torch.distributed.init_process_group first (torchrun sets its environment), or drop distributed="
            )
        self.distributed = ranks > 1 if distributed is None else distributed
        self.generator: torch.Generator | None = None
        if self.distributed or seed is not None:
            if seed is None:
                # rank 0's, mixed so that the evolution's stream is not the one that initialised the model
                seed = (torch.initial_seed() * 0x9E3779B97F4A7C15 + 0x5E7) % 2**63
            if self.distributed:
                seed = dist_sync.broadcast_seed(seed)  # one int64, once: every rank draws alike from here on
            # on the CPU: the same stream whatever device each layer lives on (draws are moved)
            self.generator = torch.Generator().manual_seed(seed)
        self.seed = seed
        self._names = [names[id(layer)] for layer in self.layers]
        rule = None if regrowth is None else as_rule(regrowth)
        if rule is not None:
            for layer in self.layers:
                rule.attach(layer)  # a rule that watches training (Gradient) starts watching now
        self.optimizer = optimizer
        self.every = every
        self.zeta = zeta
        self.schedule = schedule
        self.total_steps = total_steps
        self.regrowth = rule
        self.init = init
        self.reset_optimizer_state = reset_optimizer_state
        self.per_pass = per_pass
        if reset_optimizer_state:
            self._watch_other_optimizers(names)
        self.steps = 0
        self.evolutions = 0
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        if per_pass is not None:
            for layer in self.layers:
                self._hooks.append(layer.register_forward_pre_hook(self._evolve_before_pass))
                _PER_PASS[layer] = self

    def _watch_other_optimizers(self, names: dict[int, str]) -> None:
        """Refuse, at its first step, an optimizer other than the ones whose state is reset
        (``optimizer``, a layer's own ``optimizer``) that updates an evolving layer's
        weight: it would carry the moved weights' old momentum to their new connections."""
        weights = {id(layer.weight): names[id(layer)] for layer in self.layers}
        seen: weakref.WeakKeyDictionary[torch.optim.Optimizer, None] = weakref.WeakKeyDictionary()
        me = weakref.ref(self)

        def check(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            evolution = me()
            if evolution is None or optimizer in seen:
                return
            # any Evolution's optimizer counts (a new optimizer under a new Evolution, the old
            # one still alive), and each layer's own
            known = {id(other.optimizer) for other in _RESETTING} | {id(layer.optimizer) for layer in evolution.layers}
            if id(optimizer) not in known:
                for group in optimizer.param_groups:
                    for param in group["params"]:
                        if id(param) in weights:
                            raise ValueError(
                                f"Evolution: a second {type(optimizer).__name__} updates the weight of SETLayer "
                                f"{weights[id(param)]!r}, and its state of moved weights would never be reset; update "
                                "the SET layers' weights with the optimizer given to Evolution only"
                            )
            seen[optimizer] = None

        _RESETTING.add(self)
        handle = register_optimizer_step_pre_hook(check)
        weakref.finalize(self, handle.remove)

    @property
    def cadence(self) -> Cadence:
        """When evolutions happen (from ``every`` and ``per_pass``, which EvolNet may change)."""
        if self.per_pass is not None:
            return PerPass(self.per_pass)
        return EverySteps(self.every) if self.every else ByHand()

    def close(self) -> None:
        """Stop evolving per pass (remove the forward hooks ``per_pass`` put on the layers)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        for layer in self.layers:
            if _PER_PASS.get(layer) is self:
                del _PER_PASS[layer]

    def _evolve_before_pass(self, layer: SETLayer, args: tuple[Any, ...]) -> None:
        """``per_pass``: a coin from the layer's generator; on heads, the layer evolves."""
        assert self.per_pass is not None
        if not layer.training or (self.total_steps is not None and self.steps >= self.total_steps):
            return  # total_steps ends per-pass evolution as it ends the every= schedule
        generator = self.generator if self.generator is not None else layer.generator
        device = generator.device if generator is not None else "cpu"
        if float(torch.rand((), generator=generator, device=device)) < self.per_pass:
            with torch.no_grad():
                self._prune_layer(layer, self.zeta_factor())
                self._regrow_layer(layer)
            self.evolutions += 1

    def _prune_layer(self, layer: SETLayer, factor: float) -> None:
        layer.zero_connections((self.zeta if self.zeta is not None else layer.zeta) * factor)

    def _regrow_layer(self, layer: SETLayer) -> torch.Tensor:
        """``(k,)`` slots of the layer's moved weights (none when nothing is marked:
        evolve_connections would otherwise mark the layer's own zeta)."""
        if not bool(layer.pruned.any()):
            return layer.pruned.new_empty(0, dtype=torch.int64)
        optimizer = self.optimizer if self.reset_optimizer_state else None
        if self.generator is None:
            return layer.evolve_connections(init=self.init, optimizer=optimizer, regrowth=self.regrowth)
        # the layer draws from its own generator attribute: lend it this driver's for the step
        own = layer.generator
        layer.generator = self.generator
        try:
            with dist_sync.evolving_in_sync(self.distributed):
                return layer.evolve_connections(init=self.init, optimizer=optimizer, regrowth=self.regrowth)
        finally:
            layer.generator = own

    def check_ranks_agree(self) -> None:
        """Data parallel: raise ``RuntimeError`` (naming the layer and the ranks) unless every
        rank holds the same connections in every SETLayer. A collective: every rank calls it.
        :meth:`regrow` calls it after each evolution (per pass: :meth:`step`, each step)."""
        if self.distributed:
            dist_sync.check_same_connections(
                {name: layer.connections for name, layer in zip(self._names, self.layers)},
                f"evolution {self.evolutions} (step {self.steps})",
            )

    def zeta_factor(self) -> float:
        """The schedule's multiplier of ``zeta`` at the current step."""
        if self.schedule == "cosine":
            assert self.total_steps is not None
            return (1 + math.cos(math.pi * min(self.steps, self.total_steps) / self.total_steps)) / 2
        return 1.0

    def step(self) -> bool:
        """Count one optimizer step; evolve when one is due. Returns whether it evolved."""
        self.steps += 1
        if self.per_pass is not None:
            self.check_ranks_agree()  # a layer evolves inside a forward pass: compare once per step
        due = (
            self.every > 0
            and self.steps % self.every == 0
            and (self.total_steps is None or self.steps < self.total_steps)
        )
        if due:
            self.evolve()
        return due

    @torch.no_grad()
    def evolve(self) -> list[torch.Tensor]:
        """Prune and regrow every SETLayer now; returns :meth:`regrow`'s moved slots."""
        self.prune()
        return self.regrow()

    @torch.no_grad()
    def prune(self) -> None:
        """Mark and zero, in every SETLayer, the weights the schedule's ``zeta`` prunes now;
        they stay at 0, in place, until :meth:`regrow` moves them."""
        factor = self.zeta_factor()
        for layer in self.layers:
            self._prune_layer(layer, factor)

    @torch.no_grad()
    def regrow(self) -> list[torch.Tensor]:
        """Move every SETLayer's marked weights to new connections (its regrowth rule, or
        this driver's), resetting their optimizer state; counts one evolution.

        Returns:
            per layer (in ``self.layers``' order), the ``(k,)`` slots of the moved weights;
            empty for a layer with nothing marked.
        """
        moved = [self._regrow_layer(layer) for layer in self.layers]
        self.evolutions += 1
        self.check_ranks_agree()
        return moved

    def state_dict(self) -> dict[str, Any]:
        """The schedule's position, for checkpoints (the layers' state is in the model's), and
        the state of the driver's own generator when it has one (``seed=``, data parallel),
        so that a resumed run draws what the uninterrupted one would."""
        state: dict[str, Any] = {"steps": self.steps, "evolutions": self.evolutions}
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output.

        Raises:
            ValueError: a state that is not one (other keys, counts that are not
                non-negative integers, more evolutions than steps allow).
        """
        keys = ("steps", "evolutions", "generator")
        expected = set(keys[:3] if self.generator is not None else keys[:2])
        if not isinstance(state, dict) or set(state) != expected:
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            why = (
                " (an Evolution with its own generator, seed= or data parallel, restores one saved by such a one)"
                if isinstance(state, dict) and set(state) ^ expected == {"generator"}
                else ""
            )
            listed = ", ".join(repr(key) for key in keys if key in expected)
            raise ValueError(
                f"Evolution.load_state_dict expects {{{listed}}} (from Evolution.state_dict()), got {found}{why}"
            )
        steps, evolutions = (_count(name, state[name], minimum=0) for name in ("steps", "evolutions"))
        if self.every and evolutions > steps // self.every:
            raise ValueError(
                f"Evolution.load_state_dict: {evolutions} evolutions cannot have happened in {steps} steps with "
                f"every={self.every}"
            )
        if self.generator is not None:
            generator_state = state["generator"]
            if not isinstance(generator_state, torch.Tensor) or generator_state.dtype != torch.uint8:
                raise ValueError(
                    "Evolution.load_state_dict: 'generator' must be a torch.Generator state (a uint8 tensor, from "
                    f"Evolution.state_dict()), got {type(generator_state).__name__}"
                )
            self.generator.set_state(generator_state)
        self.steps, self.evolutions = steps, evolutions

    def __repr__(self) -> str:
        when = f"cadence={self.cadence!r}"
        return (
            f"Evolution(layers={len(self.layers)}, {when}, zeta={self.zeta}, schedule={self.schedule!r}, "
            f"steps={self.steps})"
        )
