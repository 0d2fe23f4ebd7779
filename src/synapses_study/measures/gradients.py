"""The gradient record: how much gradient each input pixel's first-layer weights receive.

A connection from pixel ``i`` gets the gradient ``delta_j * x_i`` summed over a batch, so the
squared gradient of a pixel's weights measures how hard training pushes them: nothing for a
pixel that is 0 in every image (blank pixels under ``inputs="unit"`` or ``"scaled"``), most
for pixels that are often inked and informative. A forecast of the topology needs this
exposure per pixel and epoch; the per-pixel counts and the pruning record cannot give it.

:class:`GradientRecorder` adds, after every backward pass, each first-layer weight's squared
gradient to its input pixel's total (in float64, in a fixed order, so the record is as
deterministic as the run); the engine takes the totals once per epoch into ``gradients.npz``.
The gradient is the loss's, as backward leaves it: coupled weight decay (SGD's
``weight_decay``, added inside ``optimizer.step()``) and decoupled decay are not in it, and
neither is momentum; an L1 penalty, added to the loss, is.
"""

from __future__ import annotations

import numpy as np
import torch

from synapses import SETLayer


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
