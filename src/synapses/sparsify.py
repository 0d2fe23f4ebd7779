"""Turn any model's ``nn.Linear`` layers into truly sparse :class:`SETLayer` s.

    model = synapses.sparsify(model, epsilon=20)                 # SET's Erdős–Rényi density
    model = synapses.sparsify(model, sparsity=0.9, distribution="erk")  # RigL's ERK, 90% sparse

Either call returns the model with its linear layers replaced (the output layer kept dense unless told otherwise).
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
from torch import nn

from .layer import DEFAULT_EPSILON, DEFAULT_ZETA, SUPPORTED_DTYPES, Regrowth, SETLayer
from .regrowth import as_rule

Distribution = Literal["erdos_renyi", "erk", "uniform"]
log = logging.getLogger("synapses")


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
        return (
            f"{self.name}: Linear({self.in_features}, {self.out_features}) -> SETLayer with {self.n_params:,} "
            f"connections ({100 * self.density:.2f}%)"
        )


@dataclass(frozen=True)
class KeptDense:
    """One linear layer that :func:`sparsify` left dense, and why."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: kept dense ({self.reason})"


def sparsify(
    model: nn.Module,
    *,
    epsilon: float | None = None,
    sparsity: float | None = None,
    distribution: Distribution = "erdos_renyi",
    zeta: float = DEFAULT_ZETA,
    regrowth: Regrowth | None = None,
    exclude: Iterable[str] = (),
    keep_output_dense: bool = True,
    output_layer: str | None = None,
    example_input: Any = None,
    keep_weights: bool = False,
    inplace: bool = True,
    generator: torch.Generator | None = None,
    verbose: bool = True,
    return_report: bool = False,
) -> nn.Module | tuple[nn.Module, list[Replacement | KeptDense]]:
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
        keep_output_dense: keep the output layer dense, as SET does: ``output_layer`` if
            given, else the Linear that ``model(example_input)`` applies last if an
            example is given, else the last one registered (which is not always the one
            applied last: the report says which one was kept).
        output_layer: the name of the output layer (see ``keep_output_dense``).
        example_input: an input to trace the model with, to find the layer applied last.
        keep_weights: start each connection from the dense layer's weight at that pair
            (default: SETLayer's own He initialisation, as in SET).
        inplace: change ``model`` itself (default), or a deep copy of it.
        generator: random source of the connections (``None``: torch's default).
        verbose: log one line per replaced or kept layer (logger ``"synapses"``: replaced
            ones at INFO, layers kept dense for a reason of their own at WARNING).
        return_report: also return the report: a :class:`Replacement` per replaced layer
            and a :class:`KeptDense` per linear layer left dense.

    Layers that cannot be replaced faithfully stay dense, with a warning: a Linear whose
    weight is shared with another module (weight tying: replacing it would untie them), and
    a subclass of ``nn.Linear`` (its owner may read ``.weight`` directly, as
    ``nn.MultiheadAttention`` does with ``out_proj``).

    Returns:
        The model with SETLayers, on the device and in the dtype each Linear had (and the
        report, with ``return_report``).

    Raises:
        ValueError: no Linear to replace (the message names those kept dense and the
            argument that would sparsify them), a missing or conflicting density argument,
            ``output_layer`` or ``example_input`` with ``keep_output_dense=False``, or a layer
            in a dtype or on a device SETLayer does not support (named).

    When the output layer is only guessed (the last registered: no ``output_layer`` nor
    ``example_input``), the model's first forward call notes which linear layer it applies
    last (forward hooks, removed after that call) and warns (``UserWarning``) if that is not
    the one kept dense, naming both and ``output_layer=``.

    ``example_input`` runs the model once in eval mode, without gradients; the modes and
    every buffer (BatchNorm's running statistics) are left as they were. A
    ``nn.TransformerEncoder`` holding a SETLayer gets ``use_nested_tensor = False`` (its
    fast path would hand the layers nested tensors).
    """
    if distribution == "erdos_renyi" and epsilon is None and sparsity is not None:
        raise ValueError(
            f"sparsity={sparsity!r} needs distribution='erk' or 'uniform'; distribution='erdos_renyi' (the default) "
            "takes epsilon instead"
        )
    if distribution == "erdos_renyi" and (epsilon is None or sparsity is not None):
        raise ValueError("distribution='erdos_renyi' takes epsilon (and no sparsity)")
    if distribution in ("erk", "uniform") and (sparsity is None or epsilon is not None):
        raise ValueError(f"distribution={distribution!r} takes sparsity (and no epsilon)")
    if distribution not in ("erdos_renyi", "erk", "uniform"):
        raise ValueError(f"distribution must be 'erdos_renyi', 'erk' or 'uniform', got {distribution!r}")
    if sparsity is not None and not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    as_rule(regrowth)  # a name it does not know is refused before any layer is replaced
    if output_layer is not None and not keep_output_dense:
        raise ValueError(
            f"sparsify: output_layer={output_layer!r} names the layer that keep_output_dense=True keeps dense, but "
            f"keep_output_dense is False; drop output_layer=, or keep it dense with exclude=[{output_layer!r}]"
        )
    if example_input is not None and not keep_output_dense:
        raise ValueError(
            "sparsify: example_input= only finds the output layer that keep_output_dense=True keeps dense, but "
            "keep_output_dense is False; drop example_input="
        )
    model = model if inplace else copy.deepcopy(model)
    targets, kept = _linear_layers(model, tuple(exclude), keep_output_dense, output_layer, example_input)
    if not targets:
        raise ValueError(f"sparsify: {type(model).__name__} has no nn.Linear layer to replace{_why_none(kept)}")
    for name, linear in targets.items():
        if linear.weight.dtype not in SUPPORTED_DTYPES or linear.weight.device.type == "meta":
            raise ValueError(
                f"sparsify: layer {name!r} is {linear.weight.dtype} on {linear.weight.device}; SETLayer supports "
                "float32 and float64, not on the meta device"
            )
    densities = _densities([(l.in_features, l.out_features) for l in targets.values()], distribution, epsilon, sparsity)
    replaced: dict[int, SETLayer] = {}
    report = []
    for (name, linear), density in zip(targets.items(), densities):
        if id(linear) not in replaced:
            replaced[id(linear)] = _set_layer_for(
                linear,
                density,
                epsilon if distribution == "erdos_renyi" else None,
                zeta,
                regrowth,
                keep_weights,
                generator,
            )
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, replaced[id(linear)])
        report.append(Replacement(name, linear.in_features, linear.out_features, replaced[id(linear)].n_params))
    _keep_encoders_unnested(model)
    guessed = [entry.name for entry in kept if entry.reason.startswith("the output layer: the last registered")]
    if guessed:
        _OutputLayerCheck.install(model, guessed[0], [entry.name for entry in report] + [e.name for e in kept])
    if verbose:
        for entry in report:
            log.info("%s", entry)
        for kept_entry in kept:
            (log.warning if kept_entry.reason.startswith(("its weight", "a subclass")) else log.info)("%s", kept_entry)
    full_report: list[Replacement | KeptDense] = [*report, *kept]
    return (model, full_report) if return_report else model


class _OutputLayerCheck:
    """Forward hooks (a picklable object, not a closure, so that a whole-model pickle made
    before the first call still works) that note the order in which the model's linear
    layers run in its first forward call, then warn if the layer sparsify kept dense as the
    output (the last registered) is not the one applied last, and remove themselves."""

    def __init__(self, kept: str) -> None:
        self.kept = kept
        self.order: list[str] = []

    @classmethod
    def install(cls, model: nn.Module, kept: str, names: list[str]) -> None:
        check = cls(kept)
        layers: dict[int, tuple[str, nn.Module]] = {}
        for name in names:  # a layer registered twice is hooked once, under its first name
            layers.setdefault(id(model.get_submodule(name)), (name, model.get_submodule(name)))
        for name, layer in layers.values():
            # the name travels with the hook (not an id: a pickled copy has other ids)
            layer.register_forward_hook(partial(check.layer_ran, name))
        model.register_forward_pre_hook(check.model_starts)
        model.register_forward_hook(check.model_ran)

    def model_starts(self, model: nn.Module, args: tuple[Any, ...]) -> None:
        if not torch.compiler.is_compiling():
            self.order = []  # a first call that raised left a partial order

    def layer_ran(self, name: str, layer: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not torch.compiler.is_compiling():
            self.order.append(name)

    def model_ran(self, model: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if torch.compiler.is_compiling():
            return  # traced, not run: the first eager call decides
        for module in model.modules():  # done after one call: no cost on the next ones
            for hooks in (module._forward_hooks, module._forward_pre_hooks):
                mine = [
                    key for key, hook in hooks.items() if getattr(getattr(hook, "func", hook), "__self__", 0) is self
                ]
                for key in mine:
                    del hooks[key]
        if self.order and self.order[-1] != self.kept:
            last = self.order[-1]
            warnings.warn(
                f"sparsify kept {self.kept!r} dense as the output layer (the last registered), but the model applies "
                f"{last!r} last, which it sparsified; pass output_layer={last!r} (or example_input=) to sparsify to "
                "keep the real output layer dense",
                UserWarning,
                stacklevel=2,
            )


def _why_none(kept: list[KeptDense]) -> str:
    """The end of sparsify's refusal when every linear layer is kept dense: which, why, and
    the argument that would sparsify it."""
    if not kept:
        return ""
    fixes = {
        "the output layer": "keep_output_dense=False",
        "excluded": "a narrower exclude=",
    }
    parts = []
    for entry in kept:
        fix = next((arg for start, arg in fixes.items() if entry.reason.startswith(start)), None)
        reason = entry.reason.split(":")[0] if fix else entry.reason
        parts.append(f"{entry.name!r} is {reason}" + (f" (pass {fix} to sparsify it)" if fix else ""))
    return ": " + "; ".join(parts)


def _keep_encoders_unnested(model: nn.Module) -> None:
    """Turn off the nested-tensor conversion of every ``nn.TransformerEncoder`` holding a
    SETLayer: under ``eval()`` and ``no_grad`` with a padding mask, the encoder would pass
    its layers nested tensors, which a SETLayer does not take (each encoder layer's own
    fused path is skipped by the SETLayer's hook)."""
    for module in model.modules():
        if isinstance(module, nn.TransformerEncoder) and any(isinstance(m, SETLayer) for m in module.modules()):
            module.use_nested_tensor = False


def densify(model: nn.Module, *, inplace: bool = True) -> nn.Module:
    """Replace every :class:`SETLayer` of ``model`` with the ``nn.Linear`` of its weights
    (:meth:`SETLayer.to_linear`: exact, zeros at the absent pairs), for deployment: ONNX
    export, quantisation, inference runtimes that know no sparse kernels.

    A SETLayer registered twice becomes one ``nn.Linear`` registered twice. ``model`` itself
    (``inplace=True``) or a deep copy is changed and returned; a SETLayer given as ``model``
    comes back as its ``nn.Linear``. The random state is not touched.
    """
    if isinstance(model, SETLayer):
        return model.to_linear()
    model = model if inplace else copy.deepcopy(model)
    linears: dict[int, nn.Linear] = {}
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if isinstance(module, SETLayer):
            if id(module) not in linears:
                linears[id(module)] = module.to_linear()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, linears[id(module)])
    return model


def _linear_layers(
    model: nn.Module, exclude: tuple[str, ...], keep_output_dense: bool, output_layer: str | None, example_input: Any
) -> tuple[dict[str, nn.Linear], list[KeptDense]]:
    """The ``nn.Linear`` layers to replace (one name per registration) and the linear
    layers kept dense, each with its reason."""
    linears = {name: m for name, m in model.named_modules(remove_duplicate=False) if isinstance(m, nn.Linear)}
    kept: list[KeptDense] = []
    for pattern in exclude:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in linears):
            raise ValueError(
                f"sparsify: exclude pattern {pattern!r} matches no linear layer; their names: "
                f"{', '.join(linears) or 'none'}"
            )
    if output_layer is not None and output_layer not in linears:
        raise ValueError(
            f"sparsify: output_layer={output_layer!r} is not a linear layer of the model; their names: "
            f"{', '.join(linears)}"
        )
    owners: dict[int, list[tuple[int, str]]] = {}  # parameter -> (module, name) of every holder
    for module_name, module in model.named_modules(remove_duplicate=False):
        for param_name, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append(
                (id(module), f"{module_name}.{param_name}" if module_name else param_name)
            )
    output = None
    if keep_output_dense and linears:
        output = output_layer or (
            _applied_last(model, linears, example_input) if example_input is not None else list(linears)[-1]
        )
    found = {}
    for name, module in linears.items():
        sharers = [holder for module_id, holder in owners[id(module.weight)] if module_id != id(module)]
        if name == output:
            how = (
                "named output_layer"
                if output_layer
                else "applied last"
                if example_input is not None
                else "the last registered; name output_layer= or give example_input= if another is the output"
            )
            kept.append(KeptDense(name, f"the output layer: {how}"))
        elif any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
            kept.append(KeptDense(name, "excluded"))
        elif type(module) is not nn.Linear:
            kept.append(
                KeptDense(
                    name, f"a subclass of nn.Linear ({type(module).__name__}): its owner may read .weight directly"
                )
            )
        elif sharers:
            kept.append(
                KeptDense(
                    name, f"its weight is shared with {', '.join(sharers)} (weight tying): a SETLayer would untie them"
                )
            )
        else:
            found[name] = module
    # One module registered under several names is one layer: where any of its names stays
    # dense, all do, or the model would hold a SETLayer under one name and the dense layer,
    # no longer sharing anything with it, under the other.
    for name in [n for n, m in found.items() if any(linears[e.name] is m for e in kept)]:
        twin = next(e.name for e in kept if linears[e.name] is found[name])
        reason = f"the same module as {twin!r}, which stays dense: one layer is never split in two"
        warnings.warn(f"sparsify: {name!r} kept dense: {reason}", UserWarning, stacklevel=3)
        kept.append(KeptDense(name, reason))
        del found[name]
    return found, kept


def _applied_last(model: nn.Module, linears: dict[str, nn.Linear], example_input: Any) -> str:
    """The name of the linear layer whose forward ``model(example_input)`` runs last."""
    order: list[str] = []
    names = {id(m): n for n, m in linears.items()}
    handles = [
        m.register_forward_hook(lambda module, args, out: order.append(names[id(module)])) for m in linears.values()
    ]
    # The trace must leave the model as it was: it runs in eval mode (BatchNorm would move its
    # running statistics in training mode, dropout would draw random numbers), and every
    # buffer (a counter a module keeps, say) is put back as it was, as are the modes.
    modes = [(module, module.training) for module in model.modules()]
    buffers = [(buffer, buffer.clone()) for buffer in model.buffers()]
    try:
        model.eval()
        with torch.no_grad():
            model(*example_input) if isinstance(example_input, tuple) else model(example_input)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
    if not order:
        raise ValueError("sparsify: model(example_input) ran no linear layer")
    return order[-1]


def _densities(
    shapes: list[tuple[int, int]], distribution: str, epsilon: float | None, sparsity: float | None
) -> list[float | None]:
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


def _set_layer_for(
    linear: nn.Linear,
    density: float | None,
    epsilon: float | None,
    zeta: float,
    regrowth: Regrowth | None,
    keep_weights: bool,
    generator: torch.Generator | None,
) -> SETLayer:
    # a density that rounds to every pair is asked for as sparsity 0 (SETLayer refuses 1.0)
    sparsity = None if density is None else max(0.0, 1 - density) if not math.isclose(density, 1.0) else 0.0
    layer = SETLayer.from_dense(
        linear,
        epsilon=epsilon if epsilon is not None else DEFAULT_EPSILON,
        sparsity=sparsity,
        keep_weights=keep_weights,
        zeta=zeta,
        generator=generator,
        regrowth=regrowth,
    )
    return layer
