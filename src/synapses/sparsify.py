"""Turn any model's ``nn.Linear`` layers into truly sparse :class:`SETLayer` s.

    model = synapses.sparsify(model, epsilon=20)                 # SET's Erdős–Rényi density
    model = synapses.sparsify(model, sparsity=0.9, distribution="erk")  # RigL's ERK, 90% sparse
"""
from __future__ import annotations

import copy
import fnmatch
import math
from dataclasses import dataclass
from typing import Iterable, Literal

import torch
from torch import nn

from .layer import REGROWTH_MODES, SUPPORTED_DTYPES, Regrowth, SETLayer

Distribution = Literal["erdos_renyi", "erk", "uniform"]


@dataclass(frozen=True)
class Replacement:
    """One ``nn.Linear`` that :func:`sparsify` replaced."""

    name: str
    in_features: int
    out_features: int
    n_params: int

    @property
    def density(self) -> float:
        return self.n_params / (self.in_features * self.out_features)

    def __str__(self) -> str:
        return f"{self.name}: Linear({self.in_features}, {self.out_features}) -> SETLayer with {self.n_params:,} connections ({100 * self.density:.2f}%)"


def sparsify(
    model: nn.Module,
    *,
    epsilon: float | None = None,
    sparsity: float | None = None,
    distribution: Distribution = "erdos_renyi",
    zeta: float = 0.3,
    regrowth: Regrowth = "uniform",
    exclude: Iterable[str] = (),
    keep_output_dense: bool = True,
    keep_weights: bool = False,
    inplace: bool = True,
    generator: torch.Generator | None = None,
    verbose: bool = True,
) -> nn.Module:
    """Replace ``model``'s ``nn.Linear`` layers with :class:`SETLayer` s.

    Args:
        model: any module; its ``nn.Linear`` submodules are replaced where they are
            registered (a layer registered twice is replaced once, by one SETLayer).
        epsilon: Erdős–Rényi parameter, ``density = epsilon (in + out) / (in out)`` per layer
            (``distribution="erdos_renyi"``, SET's rule).
        sparsity: the fraction of absent weights over all replaced layers together
            (``"erk"``: per-layer density proportional to ``(in + out) / (in out)``, capped at
            1, RigL's rule) or in each layer (``"uniform"``).
        distribution: ``"erdos_renyi"`` (needs ``epsilon``), ``"erk"`` or ``"uniform"``
            (need ``sparsity``).
        zeta, regrowth: of the new layers (see :class:`SETLayer`).
        exclude: names (or ``fnmatch`` patterns, e.g. ``"head.*"``) of Linear layers to keep.
        keep_output_dense: keep the last registered Linear dense, as SET does with its
            output layer.
        keep_weights: start each connection from the dense layer's weight at that pair
            (default: SETLayer's own He initialisation, as in SET).
        inplace: change ``model`` itself (default), or a deep copy of it.
        generator: random source of the connections (``None``: torch's default).
        verbose: print one line per replaced layer.

    Returns:
        The model with SETLayers, on the device and in the dtype each Linear had.

    Raises:
        ValueError: no Linear to replace, a missing or conflicting density argument, or a
            layer in a dtype or on a device SETLayer does not support (named).
    """
    if distribution == "erdos_renyi" and (epsilon is None or sparsity is not None):
        raise ValueError("distribution='erdos_renyi' takes epsilon (and no sparsity)")
    if distribution in ("erk", "uniform") and (sparsity is None or epsilon is not None):
        raise ValueError(f"distribution={distribution!r} takes sparsity (and no epsilon)")
    if distribution not in ("erdos_renyi", "erk", "uniform"):
        raise ValueError(f"distribution must be 'erdos_renyi', 'erk' or 'uniform', got {distribution!r}")
    if sparsity is not None and not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    if regrowth not in REGROWTH_MODES:
        raise ValueError(f"regrowth must be one of {REGROWTH_MODES}, got {regrowth!r}")
    model = model if inplace else copy.deepcopy(model)
    targets = _linear_layers(model, tuple(exclude), keep_output_dense)
    if not targets:
        raise ValueError(f"sparsify: {type(model).__name__} has no nn.Linear layer to replace (after exclude and keep_output_dense)")
    for name, linear in targets.items():
        if linear.weight.dtype not in SUPPORTED_DTYPES or linear.weight.device.type == "meta":
            raise ValueError(f"sparsify: layer {name!r} is {linear.weight.dtype} on {linear.weight.device}; SETLayer supports float32 and float64, not on the meta device")
    densities = _densities([(l.in_features, l.out_features) for l in targets.values()], distribution, epsilon, sparsity)
    replaced: dict[int, SETLayer] = {}
    report = []
    for (name, linear), density in zip(targets.items(), densities):
        if id(linear) not in replaced:
            replaced[id(linear)] = _set_layer_for(linear, density, epsilon if distribution == "erdos_renyi" else None, zeta, regrowth, keep_weights, generator)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, replaced[id(linear)])
        report.append(Replacement(name, linear.in_features, linear.out_features, replaced[id(linear)].n_params))
    if verbose:
        print("\n".join(map(str, report)))
    return model


def _linear_layers(model: nn.Module, exclude: tuple[str, ...], keep_output_dense: bool) -> dict[str, nn.Linear]:
    """Every ``nn.Linear`` registered in ``model`` (one name per registration), minus the
    excluded ones and, with ``keep_output_dense``, the last one."""
    found = {name: m for name, m in model.named_modules(remove_duplicate=False) if type(m) is nn.Linear}
    if keep_output_dense and found:
        found.pop(list(found)[-1])
    return {name: m for name, m in found.items() if not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)}


def _densities(shapes: list[tuple[int, int]], distribution: str, epsilon: float | None, sparsity: float | None) -> list[float | None]:
    """Per-layer density (``None``: let SETLayer apply ``epsilon``)."""
    if distribution == "erdos_renyi":
        return [None] * len(shapes)
    assert sparsity is not None
    if distribution == "uniform":
        return [1 - sparsity] * len(shapes)
    # ERK: density_l = min(1, c * (in + out) / (in * out)) with c set so that the total number
    # of connections is (1 - sparsity) of all pairs; layers that would exceed 1 are dense and
    # the rest share what is left.
    sizes = [a * b for a, b in shapes]
    raw = [(a + b) / (a * b) for a, b in shapes]
    dense: set[int] = set()
    while True:
        budget = (1 - sparsity) * sum(sizes) - sum(sizes[i] for i in dense)
        scale = budget / sum(raw[i] * sizes[i] for i in range(len(shapes)) if i not in dense)
        over = {i for i in range(len(shapes)) if i not in dense and scale * raw[i] > 1}
        if not over:
            return [1.0 if i in dense else scale * raw[i] for i in range(len(shapes))]
        dense |= over


def _set_layer_for(linear: nn.Linear, density: float | None, epsilon: float | None, zeta: float, regrowth: Regrowth, keep_weights: bool, generator: torch.Generator | None) -> SETLayer:
    # a density that rounds to every pair is asked for as sparsity 0 (SETLayer refuses 1.0)
    sparsity = None if density is None else max(0.0, 1 - density) if not math.isclose(density, 1.0) else 0.0
    layer = SETLayer(
        linear.in_features, linear.out_features, epsilon=epsilon if epsilon is not None else 11, sparsity=sparsity,
        zeta=zeta, bias=linear.bias is not None, generator=generator, regrowth=regrowth,
        device=linear.weight.device, dtype=linear.weight.dtype,
    )
    if keep_weights:
        with torch.no_grad():
            layer.weight.copy_(linear.weight[layer.connections[:, 1], layer.connections[:, 0]])
            if linear.bias is not None and layer.bias is not None:
                layer.bias.copy_(linear.bias)
    return layer
