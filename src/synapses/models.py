"""The MNIST networks of the original demo, built from SETLayers."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layer import SETLayer


class SparseNet(nn.Module):
    """784-512-128-10 perceptron: two SET layers with ReLU, a dense readout, log-softmax.

    23,226 parameters with the defaults (the dense equivalent has about 468k). Evolution is
    driven from outside, once per epoch: :meth:`zero_connections` after training,
    :meth:`evolve_connections` before the next epoch.

    Args:
        sizes: ``(input, hidden..., output)`` widths; every layer but the last is a SETLayer.
        epsilon, zeta: passed to each SETLayer.
        generator: passed to each SETLayer.
        compute: passed to each SETLayer (``"auto"``, ``"sparse"`` or ``"dense"``).

    Shape:
        Input ``(batch, *)`` with ``prod(*) == sizes[0]`` (e.g. ``(batch, 1, 28, 28)``);
        output ``(batch, sizes[-1])`` log-probabilities.
    """

    def __init__(
        self,
        sizes: tuple[int, ...] = (784, 512, 128, 10),
        epsilon: float = 11,
        zeta: float = 0.3,
        *,
        generator: torch.Generator | None = None,
        compute: str = "auto",
    ) -> None:
        super().__init__()
        if len(sizes) < 3:
            raise ValueError(f"sizes needs an input, at least one hidden and an output width, got {sizes!r}")
        self.sizes = tuple(sizes)
        self.set_layers = nn.ModuleList(
            SETLayer(a, b, epsilon=epsilon, zeta=zeta, generator=generator, compute=compute)
            for a, b in zip(sizes[:-2], sizes[1:-1])
        )
        self.readout = nn.Linear(sizes[-2], sizes[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.set_layers:
            x = F.relu(layer(x))
        return F.log_softmax(self.readout(x), dim=1)

    def zero_connections(self) -> None:
        """Mark and zero the weights each SET layer will move."""
        for layer in self.set_layers:
            layer.zero_connections()

    def evolve_connections(self, init: bool = True, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Move each SET layer's marked weights to new connections."""
        for layer in self.set_layers:
            layer.evolve_connections(init=init, optimizer=optimizer)


class EvolNet(SparseNet):
    """SparseNet that evolves during training: each SET layer, on each training forward
    pass, evolves with probability ``evolution_proba`` before computing its output.

    As in the original, the constructor's ``evolution_proba`` is shared among the SET
    layers (the attribute holds the per-layer probability, ``evolution_proba / 2`` for the
    default net); assigning the attribute later sets the per-layer probability directly.
    No optimizer is handed to the layers, so momentum buffers are not reset (as the
    original did); pass ``optimizer=`` to change that.
    """

    def __init__(
        self,
        evolution_proba: float,
        sizes: tuple[int, ...] = (784, 512, 128, 10),
        epsilon: float = 11,
        zeta: float = 0.3,
        *,
        generator: torch.Generator | None = None,
        compute: str = "auto",
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        super().__init__(sizes, epsilon, zeta, generator=generator, compute=compute)
        if not 0 <= evolution_proba <= 1:
            raise ValueError(f"evolution_proba must be in [0, 1], got {evolution_proba!r}")
        self.evolution_proba = evolution_proba / len(self.set_layers)
        self.generator = generator
        self.optimizer = optimizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.set_layers:
            if self.training and self._coin() < self.evolution_proba:
                layer.evolve_connections(optimizer=self.optimizer)
            x = F.relu(layer(x))
        return F.log_softmax(self.readout(x), dim=1)

    def _coin(self) -> float:
        device = self.generator.device if self.generator is not None else "cpu"
        return float(torch.rand((), generator=self.generator, device=device))
