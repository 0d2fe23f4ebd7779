"""Resetting the optimizer state of weights that evolution moved to new connections.

A moved weight is a new parameter as far as the optimizer should know: its momentum and
second-moment estimates belong to the connection it left. For each built-in ``torch.optim``
optimizer with per-element state, :data:`RESET_RULES` says what a fresh parameter starts
with. Entries of the moved weights are set to that; all other entries are left untouched.

Per-tensor scalars (``step``, ASGD's ``eta`` and ``mu``, NAdam's ``mu_product``) cannot be
reset for a subset of elements and are left as they are. State this module does not know
raises :class:`UnknownOptimizerStateError` rather than being silently kept or corrupted;
:func:`register_reset_rule` teaches it a new optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

# fresh value of one per-element state entry, given the optimizer's param group
FreshValue = Callable[[dict[str, Any]], float]


def _zero(group: dict[str, Any]) -> float:
    return 0.0


RESET_RULES: dict[type[torch.optim.Optimizer], dict[str, FreshValue]] = {
    torch.optim.SGD: {"momentum_buffer": _zero},
    torch.optim.Adam: {"exp_avg": _zero, "exp_avg_sq": _zero, "max_exp_avg_sq": _zero},
    torch.optim.AdamW: {"exp_avg": _zero, "exp_avg_sq": _zero, "max_exp_avg_sq": _zero},
    torch.optim.NAdam: {"exp_avg": _zero, "exp_avg_sq": _zero},
    torch.optim.RAdam: {"exp_avg": _zero, "exp_avg_sq": _zero},
    torch.optim.Adamax: {"exp_avg": _zero, "exp_inf": _zero},
    torch.optim.RMSprop: {"square_avg": _zero, "momentum_buffer": _zero, "grad_avg": _zero},
    torch.optim.Adagrad: {"sum": lambda group: group["initial_accumulator_value"]},
    torch.optim.Adadelta: {"square_avg": _zero, "acc_delta": _zero},
    # Rprop starts every step size at the learning rate.
    torch.optim.Rprop: {"prev": _zero, "step_size": lambda group: group["lr"]},
    # ASGD's running average of the parameter starts at zero.
    torch.optim.ASGD: {"ax": _zero},
}


class UnknownOptimizerStateError(RuntimeError):
    """The optimizer keeps per-element state whose fresh value is not known."""


def register_reset_rule(optimizer_class: type[torch.optim.Optimizer], rules: dict[str, FreshValue]) -> None:
    """Teach :func:`reset_state` the fresh values of ``optimizer_class``'s state entries."""
    RESET_RULES[optimizer_class] = dict(rules)


def _rules_for(optimizer: torch.optim.Optimizer) -> dict[str, FreshValue] | None:
    for cls in type(optimizer).__mro__:
        if cls in RESET_RULES:
            return RESET_RULES[cls]
    return None


def check_known(optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`UnknownOptimizerStateError` unless resetting ``optimizer``'s state is
    known (built in, or taught with :func:`register_reset_rule`)."""
    if _rules_for(optimizer) is None:
        name = type(optimizer).__name__
        raise UnknownOptimizerStateError(
            f"don't know how to reset the state of {name} for moved weights; teach it with "
            f"synapses.register_reset_rule({name}, {{'<state key>': lambda group: <fresh value>}})"
        )


def _group_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict[str, Any] | None:
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            return group
    return None


def plan_reset(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> list[tuple[torch.Tensor, float]]:
    """Check the optimizer's state of ``param`` and list ``(state tensor, fresh value)``.

    Called before anything moves, so that an optimizer with unknown state leaves the layer
    untouched.

    Raises:
        UnknownOptimizerStateError: the state of ``param`` has a per-element entry with no
            known fresh value, or the optimizer is unknown and holds state (e.g. LBFGS,
            whose history is one flat vector over all parameters).
    """
    group = _group_of(optimizer, param)
    if group is None:
        return []
    rules = _rules_for(optimizer)
    name = type(optimizer).__name__
    own = optimizer.state.get(param, {})
    if rules is None and not own and any(optimizer.state.values()):
        raise UnknownOptimizerStateError(
            f"don't know how to reset the state of {name} for moved weights; teach it with "
            f"synapses.register_reset_rule({name}, {{'<state key>': lambda group: <fresh value>}})"
        )
    plan = []
    for key, value in own.items():
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            continue  # per-tensor scalar (step count, ...): not per element
        if value.shape != param.shape:
            raise UnknownOptimizerStateError(
                f"{name} state {key!r} has shape {tuple(value.shape)}, not the parameter's "
                f"{tuple(param.shape)}: cannot reset the moved weights' entries"
            )
        if rules is None or key not in rules:
            raise UnknownOptimizerStateError(
                f"don't know the fresh value of {name} state {key!r}; teach it with "
                f"synapses.register_reset_rule({name}, {{{key!r}: lambda group: ...}})"
            )
        plan.append((value, rules[key](group)))
    return plan


def apply_reset(plan: list[tuple[torch.Tensor, float]], indices: torch.Tensor) -> None:
    """Set the entries ``indices`` of each planned state tensor to its fresh value."""
    for value, fresh in plan:
        value[indices.to(value.device)] = fresh


def reset_state(optimizer: torch.optim.Optimizer, param: torch.Tensor, indices: torch.Tensor) -> None:
    """Give the elements ``param[indices]`` the optimizer state of a fresh parameter.

    Args:
        optimizer: any optimizer; one that does not hold ``param`` is left alone.
        param: the parameter whose elements moved, e.g. ``SETLayer.weight`` ``(n,)``.
        indices: ``(k,)`` int64 positions in ``param``.

    Raises:
        UnknownOptimizerStateError: see :func:`plan_reset`; nothing is changed then.
    """
    apply_reset(plan_reset(optimizer, param), indices)
