"""The dense masked layer a user would otherwise write: the baseline for tests and benchmarks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layer import SETLayer


class MaskedLinear(nn.Module):
    """``y = x (W * M)^T + b`` with a dense weight ``W`` and a fixed 0/1 mask ``M``.

    Memory is O(in_features * out_features) whatever the density: this is what
    :class:`~synapses.SETLayer` avoids. Build one with the same values and connections as a
    SETLayer with :meth:`from_set_layer`.

    Attributes:
        weight: ``(out_features, in_features)`` dense parameter.
        mask: ``(out_features, in_features)`` buffer of 0s and 1s, in ``weight``'s dtype.
        bias: ``(out_features,)`` or ``None``.
    """

    mask: torch.Tensor

    def __init__(self, weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if weight.shape != mask.shape or weight.dim() != 2:
            raise ValueError(
                f"weight and mask must be equal 2-d shapes, got {tuple(weight.shape)} and {tuple(mask.shape)}"
            )
        self.out_features, self.in_features = weight.shape
        self.weight = nn.Parameter(weight * mask)
        self.register_buffer("mask", mask.to(weight.dtype))
        self.bias = nn.Parameter(bias.clone()) if bias is not None else None

    @classmethod
    def from_set_layer(cls, layer: SETLayer) -> MaskedLinear:
        """A dense copy of ``layer``'s current values, connections and bias."""
        with torch.no_grad():
            weight = layer.to_dense()
            mask = torch.zeros_like(weight)
            mask[layer.connections[:, 1], layer.connections[:, 0]] = 1
            bias = layer.bias.detach() if layer.bias is not None else None
        return cls(weight, mask, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(*, in_features)`` -> ``(*, out_features)``."""
        return F.linear(x, self.weight * self.mask, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
