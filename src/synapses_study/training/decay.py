"""Weight decay and L1 of a run: one policy object, consulted where each acts.

The engine asks it three things: the coefficient the optimizer holds during an epoch
(coupled decay: SGD's ``weight_decay``; 0 for the decoupled kind), the penalty added to a
batch's loss (L1), and what to do after each optimizer step (decoupled decay shrinks every
parameter by ``wd * w``). The coefficient of an epoch, constant or linear from
``weight_decay`` to ``weight_decay_end``, is defined here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ..setup.config import ExperimentConfig


@dataclass(frozen=True)
class WeightDecayPolicy:
    """Args:
    mode: ``"coupled"`` (the optimizer's ``weight_decay``) or ``"decoupled"``.
    start: coefficient during the first epoch.
    end: coefficient during the last epoch (``None``: constant), reached linearly.
    epochs: length of the run.
    l1: coefficient of ``l1 * sum(|w|)`` added to the training loss.
    """

    mode: Literal["coupled", "decoupled"]
    start: float
    end: float | None
    epochs: int
    l1: float = 0.0

    @classmethod
    def of(cls, config: ExperimentConfig) -> WeightDecayPolicy:
        return cls(config.decay_mode, config.weight_decay, config.weight_decay_end, config.epochs, config.l1)

    def at(self, epoch: int) -> float:
        """The decay coefficient in force during ``epoch`` (1-based)."""
        if self.end is None or self.epochs == 1:
            return self.start
        progress = (epoch - 1) / (self.epochs - 1)
        return self.start + (self.end - self.start) * progress

    def optimizer_coefficient(self, epoch: int) -> float:
        """What the optimizer's ``weight_decay`` holds during ``epoch``."""
        return self.at(epoch) if self.mode == "coupled" else 0.0

    def set_epoch(self, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        for group in optimizer.param_groups:
            group["weight_decay"] = self.optimizer_coefficient(epoch)

    def objective(self, loss: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
        """The loss to differentiate: ``loss`` plus the L1 penalty, if any."""
        return loss + self.l1 * sum(p.abs().sum() for p in params) if self.l1 else loss

    @torch.no_grad()
    def after_step(self, params: Iterable[torch.Tensor], epoch: int) -> None:
        """Decoupled decay: shrink every parameter directly, outside the optimizer."""
        decay = self.at(epoch) if self.mode == "decoupled" else 0.0
        if decay:
            for p in params:
                p.mul_(1.0 - decay)
