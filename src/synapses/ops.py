"""The sparse kernels as torch custom operators (``torch.library``): ``synapses::linear``,
``synapses::linear_backward`` and ``synapses::sampled``.

A SETLayer's forward calls one operator with plain tensors (the input, ``weight``, ``bias``
and the ``connections`` buffer) and two constants (the output width and the compute path).
What the kernels need besides, the CSR index of the connections, is looked up inside the
operator (:func:`index_for`), never in Python code that ``torch.compile`` or
``torch.export`` traces: they see an opaque operator with a fake (meta) implementation
that gives the output's shape and layout, and an autograd formula. So a compiled step
survives an evolution (the connections change in place; nothing that a guard watches
does), and a sparsified model exports.

The index is built once per topology and cached by the connections' storage and version
counter (evolution and ``load_state_dict`` write in place and bump the counter); on the
CPU, up to ``CONTENT_CHECK_MAX`` connections, their content is compared too, which catches
writes that bypass the counter (through ``.data``). A cached index is dropped when its
connections tensor is freed.

Layouts: ``synapses::linear`` returns ``(batch, rows)`` as the transpose of a contiguous
``(rows, batch)`` matrix (the layout the compiled kernels read and write: stacked layers
pass it on without copies); the fake implementations return the same strides.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import native
from .sparse_ops import CSRIndex, csr_backward, csr_product, fits_int32, flat_keys, sampled_product

CONTENT_CHECK_MAX = 1 << 20  # connections whose content is compared with the cached index's on every CPU call
COMPUTE_OPS = ("sparse", "native")  # the paths that run through the custom operators


@dataclass
class _Entry:
    version: int
    sizes: tuple[int, int]  # (in_features, out_features)
    n: int
    source: torch.Tensor | None  # a copy of the connections, for the content check
    # by index dtype; one at a time (a layer whose path changes between calls, as under
    # compute="measure", converts it rather than keeping both)
    indexes: dict[torch.dtype, CSRIndex] = field(default_factory=dict)
    transposed: dict[torch.dtype, CSRIndex] = field(default_factory=dict)


_indexes: dict[tuple[torch.device, int], _Entry] = {}
_builds = 0


def index_builds() -> int:
    """How many CSR indexes have been built in this process (each topology once per index dtype)."""
    return _builds


def cached_index_bytes(connections: torch.Tensor) -> int:
    """Bytes the cached indexes of ``connections`` hold now (every orientation and index
    dtype built so far, the content check's copy, the inverse permutation once computed;
    storage shared between them counted once); 0 where none is cached."""
    entry = _indexes.get((connections.device, connections.data_ptr()))
    if entry is None:
        return 0
    tensors = [entry.source] if entry.source is not None else []
    for index in [*entry.indexes.values(), *entry.transposed.values()]:
        tensors += [index.crow, index.col, index.order, index.crow_t, index.col_t, index.order_t]
        if "inverse" in index.__dict__:  # computed on first use only (cached_property)
            tensors.append(index.__dict__["inverse"])
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def _forget(key: tuple[torch.device, int]) -> None:
    _indexes.pop(key, None)


def index_for(
    connections: torch.Tensor, in_features: int, out_features: int, transpose: bool = False, compact: bool = False
) -> CSRIndex:
    """The CSR index of ``connections`` ``(n, 2)`` for an ``in_features x out_features``
    layer (of its transpose with ``transpose``), built on the first call for this topology;
    with ``compact``, int32 where it fits (the compiled kernels' index: half the memory)."""
    global _builds
    key = (connections.device, connections.data_ptr())
    entry = _indexes.get(key)
    checked = connections.device.type == "cpu" and len(connections) <= CONTENT_CHECK_MAX
    stale = (
        entry is None
        or entry.version != connections._version
        or entry.sizes != (in_features, out_features)
        or entry.n != len(connections)
        or (entry.source is not None and not torch.equal(entry.source, connections))
    )
    if stale:
        if entry is None:  # the first index of this storage: forgotten when its tensor is freed
            weakref.finalize(connections, _forget, key)
        entry = _Entry(
            version=connections._version,
            sizes=(in_features, out_features),
            n=len(connections),
            source=connections.clone() if checked else None,
        )
        _indexes[key] = entry
    assert entry is not None
    dtype = torch.int32 if compact and fits_int32(len(connections), in_features, out_features) else torch.int64
    if dtype not in entry.indexes:
        if entry.indexes:  # the other dtype: the same index, cast (no sort), and the old one dropped
            (other,) = entry.indexes.values()
            entry.indexes = {dtype: other.to(dtype)}
            entry.transposed.clear()
        else:
            entry.indexes[dtype] = CSRIndex.build(connections, in_features, out_features, compact)
            _builds += 1
    if not transpose:
        return entry.indexes[dtype]
    if dtype not in entry.transposed:
        entry.transposed[dtype] = entry.indexes[dtype].transposed()
    return entry.transposed[dtype]


def _layer_sizes(x: torch.Tensor, rows: int, transpose: bool) -> tuple[int, int]:
    """The layer's ``(in_features, out_features)`` for an operand ``x`` ``(batch, k)`` whose
    product has ``rows`` columns: ``(k, rows)``, or ``(rows, k)`` through the transpose."""
    return (rows, x.shape[1]) if transpose else (x.shape[1], rows)


ONNX_REFUSAL = (
    "a SETLayer cannot be exported to ONNX in sparse form (its sparse kernels have no ONNX operator): export "
    "synapses.densify(model) instead"
)


def refuse_onnx_export() -> None:
    """Raise :data:`ONNX_REFUSAL` where an ONNX export is tracing the operators.

    torch's ONNX exporter (``torch.onnx.export(..., dynamo=True)``) first captures the model
    with ``torch.export``, non-strict and, where that fails, strict: under dynamo (strict)
    ``torch.onnx.is_in_onnx_export()`` in traced code reads as ``False``, so a layer's own
    check cannot see the export there. The fake implementations below run as plain Python
    while any tracer (dynamo included) computes the operators' shapes, where the exporter's
    flag reads true; they call this, so every way into the ONNX exporter ends in this one line
    (plain ``torch.export`` and ``torch.compile`` leave the flag unset)."""
    if torch.onnx.is_in_onnx_export():
        raise RuntimeError(ONNX_REFUSAL)


def _transposed_output(x: torch.Tensor, rows: int) -> torch.Tensor:
    """An empty ``(batch, rows)`` tensor laid out as the transpose of a contiguous ``(rows, batch)``."""
    return x.new_empty(rows, x.shape[0]).t()


# ---------------------------------------------------------------------------- synapses::linear
@torch.library.custom_op("synapses::linear", mutates_args=())
def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    connections: torch.Tensor,
    rows: int,
    kernel: str,
    transpose: bool = False,
) -> torch.Tensor:
    """``x @ W.T + bias`` (``x @ W + bias`` with ``transpose``) for the sparse ``W`` whose
    values are ``weight`` ``(n,)`` at ``connections`` ``(n, 2)`` (input, output).

    ``x``: ``(batch, in)`` (``(batch, out)`` with ``transpose``); ``rows``: the result's
    width; ``kernel``: ``"sparse"`` (torch's CSR kernels) or ``"native"`` (the compiled
    ones). Returns ``(batch, rows)``, the transpose of a contiguous ``(rows, batch)``.
    """
    index = index_for(connections, *_layer_sizes(x, rows, transpose), transpose, compact=kernel == "native")
    return _linear_impl(x, weight, bias, index, kernel)


def _linear_impl(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, index: CSRIndex, kernel: str
) -> torch.Tensor:
    if kernel == "native":
        return native.linear_t(x, weight, bias, index).t()
    y_t = csr_product(x, weight, index)
    return (y_t + bias[:, None] if bias is not None else y_t).t()


@linear.register_fake
def _(x, weight, bias, connections, rows, kernel, transpose=False):
    refuse_onnx_export()
    return _transposed_output(x, rows)


def _linear_setup(ctx, inputs, output) -> None:
    x, weight, bias, connections, rows, kernel, transpose = inputs
    ctx.save_for_backward(x, weight, connections)
    ctx.rows, ctx.kernel, ctx.transpose, ctx.has_bias = rows, kernel, transpose, bias is not None
    # the input gradient is returned in x's layout: autograd would otherwise copy it into that
    # layout for a leaf x, more slowly than the compiled kernels' own transpose
    ctx.x_row_major = x.is_contiguous()
    ctx.eager = False  # reached through the operator (compiled, exported): its backward is an operator too


def _linear_backward(ctx, grad_y: torch.Tensor):
    # a backward pass called inside torch.autocast would otherwise lower the CSR products to
    # bfloat16, which torch's sparse kernels refuse: the layer computes in its own dtype both ways
    with torch.autocast(grad_y.device.type, enabled=False):
        return _linear_backward_in_dtype(ctx, grad_y)


def _linear_backward_in_dtype(ctx, grad_y: torch.Tensor):
    x, weight, connections = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    need_b = need_b and ctx.has_bias
    grad_x = grad_w = grad_b = None
    if torch.is_grad_enabled():
        # create_graph=True (gradient penalties): a backward built from these operators,
        # on torch's CSR kernels, so that it is differentiable in turn (second derivatives exact)
        if need_x:
            grad_x = linear(grad_y, weight, None, connections, x.shape[1], "sparse", not ctx.transpose)
        if need_w:
            grad_w = sampled(grad_y, x, connections, ctx.transpose)
        if need_b:
            grad_b = grad_y.sum(0)
    else:
        if ctx.eager:  # the index the forward used (the connections cannot have changed: autograd checks their version)
            grad_x, grad_w, grad_b = _linear_backward_impl(
                grad_y, x, weight, ctx.index, ctx.kernel, need_x, need_w, need_b, ctx.x_row_major
            )
        else:
            gx, gw, gb = linear_backward(
                grad_y,
                x,
                weight,
                connections,
                ctx.rows,
                ctx.kernel,
                ctx.transpose,
                need_x,
                need_w,
                need_b,
                ctx.x_row_major,
            )
            grad_x, grad_w, grad_b = (gx if need_x else None), (gw if need_w else None), (gb if need_b else None)
    return grad_x, grad_w, grad_b, None, None, None, None


linear.register_autograd(_linear_backward, setup_context=_linear_setup)


class _EagerLinear(torch.autograd.Function):
    """:func:`linear` and its gradients without the dispatcher: the same functions, called
    directly. A custom operator's call through the dispatcher and its autograd wrapper costs
    about 30 microseconds forward and 70 with gradients, per layer and step (measured here on
    a 512 x 128 layer, batch 128: 10-30% of a small layer's training step); eager
    calls take this path, traced ones (``torch.compile``, ``torch.export``) the operator."""

    @staticmethod
    def forward(ctx, x, weight, bias, connections, rows, kernel, transpose):  # type: ignore[override]
        _linear_setup(ctx, (x, weight, bias, connections, rows, kernel, transpose), None)
        ctx.eager = True
        ctx.index = index_for(connections, *_layer_sizes(x, rows, transpose), transpose, compact=kernel == "native")
        return _linear_impl(x, weight, bias, ctx.index, kernel)

    @staticmethod
    def backward(ctx, grad_y):  # type: ignore[override]
        return _linear_backward(ctx, grad_y)


def apply_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    connections: torch.Tensor,
    rows: int,
    kernel: str,
    transpose: bool = False,
) -> torch.Tensor:
    """:func:`linear`: through the custom operator when traced, else directly (see :class:`_EagerLinear`)."""
    if torch.compiler.is_compiling():
        return linear(x, weight, bias, connections, rows, kernel, transpose)
    return _EagerLinear.apply(x, weight, bias, connections, rows, kernel, transpose)


# ---------------------------------------------------------------------------- synapses::linear_backward
@torch.library.custom_op("synapses::linear_backward", mutates_args=())
def linear_backward(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    connections: torch.Tensor,
    rows: int,
    kernel: str,
    transpose: bool,
    need_x: bool,
    need_w: bool,
    need_b: bool,
    x_row_major: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of :func:`linear` (first order): ``(dL/dx, dL/dweight, dL/dbias)`` of
    shapes ``(batch, x.shape[1])``, ``(n,)`` and ``(rows,)``, from ``grad_y`` ``(batch, rows)``.
    One not asked for (``need_*`` false) is returned empty (shape ``(0,)``)."""
    index = index_for(connections, *_layer_sizes(x, rows, transpose), transpose, compact=kernel == "native")
    grads = _linear_backward_impl(grad_y, x, weight, index, kernel, need_x, need_w, need_b, x_row_major)
    # an operator's outputs may not alias each other: one empty tensor for each gradient not asked for
    return tuple(grad if grad is not None else grad_y.new_empty(0) for grad in grads)  # type: ignore[return-value]


def _linear_backward_impl(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    index: CSRIndex,
    kernel: str,
    need_x: bool,
    need_w: bool,
    need_b: bool,
    x_row_major: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    if kernel == "native":
        return native.linear_t_backward(grad_y, x, weight, index, need_x, need_w, need_b, x_row_major)
    return (*csr_backward(grad_y, x, weight, index, need_x, need_w), grad_y.sum(0) if need_b else None)


@linear_backward.register_fake
def _(grad_y, x, weight, connections, rows, kernel, transpose, need_x, need_w, need_b, x_row_major):
    refuse_onnx_export()
    if not need_x:
        grad_x = grad_y.new_empty(0)
    elif kernel == "native" and x_row_major:
        grad_x = x.new_empty(x.shape)
    else:
        grad_x = _transposed_output(grad_y, x.shape[1])
    return grad_x, weight.new_empty(weight.shape if need_w else 0), grad_y.new_empty(rows if need_b else 0)


# ---------------------------------------------------------------------------- synapses::sampled
@torch.library.custom_op("synapses::sampled", mutates_args=())
def sampled(grad_y: torch.Tensor, x: torch.Tensor, connections: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """``v[k] = sum_b grad_y[b, out_k] * x[b, in_k]`` (in and out swapped with ``transpose``):
    the weight gradient ``(n,)`` of :func:`linear` from ``grad_y`` ``(batch, out)`` and ``x``
    ``(batch, in)``, as a differentiable operator (torch's CSR kernels)."""
    in_features, out_features = _layer_sizes(x, grad_y.shape[1], transpose)
    return sampled_product(grad_y, x, index_for(connections, in_features, out_features, transpose))


@sampled.register_fake
def _(grad_y, x, connections, transpose=False):
    refuse_onnx_export()
    return grad_y.new_empty(connections.shape[0])


def _sampled_setup(ctx, inputs, output) -> None:
    grad_y, x, connections, transpose = inputs
    ctx.save_for_backward(grad_y, x, connections)
    ctx.transpose = transpose


def _sampled_backward(ctx, grad_v: torch.Tensor):
    with torch.autocast(grad_v.device.type, enabled=False):  # as _linear_backward
        return _sampled_backward_in_dtype(ctx, grad_v)


def _sampled_backward_in_dtype(ctx, grad_v: torch.Tensor):
    grad_y, x, connections = ctx.saved_tensors
    # d/dg[b, o] = sum_{k: out_k = o} grad_v[k] x[b, in_k]: x through the layer with weight grad_v;
    # d/dx[b, i] = sum_{k: in_k = i} grad_v[k] g[b, out_k]: g through its transpose.
    grad_g = linear(x, grad_v, None, connections, grad_y.shape[1], "sparse", ctx.transpose)
    grad_x = linear(grad_y, grad_v, None, connections, x.shape[1], "sparse", not ctx.transpose)
    return (
        grad_g if ctx.needs_input_grad[0] else None,
        grad_x if ctx.needs_input_grad[1] else None,
        None,
        None,
    )


sampled.register_autograd(_sampled_backward, setup_context=_sampled_setup)


# ---------------------------------------------------------------------------- the paths
def sparse_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, connections: torch.Tensor, out_features: int
) -> torch.Tensor:
    """CSR path. ``x``: ``(batch, in)``; ``weight``: ``(n,)``; ``connections``: ``(n, 2)``;
    returns ``(batch, out)``."""
    return apply_linear(x, weight, bias, connections, out_features, "sparse")


def native_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, connections: torch.Tensor, out_features: int
) -> torch.Tensor:
    """Compiled path (CPU). Arguments as :func:`sparse_linear`; the result is laid out
    feature-major (see :mod:`synapses.native`)."""
    if x.device.type != "cpu":
        raise native.NativeKernelsUnavailable(f"synapses' compiled kernels run on the CPU; this input is on {x.device}")
    return apply_linear(x, weight, bias, connections, out_features, "native")


def dense_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, connections: torch.Tensor, out_features: int
) -> torch.Tensor:
    """Dense path: the weights scattered into an ``(out, in)`` matrix, then ``F.linear``
    (plain torch operations: autograd gathers the gradient back)."""
    in_features = x.shape[1]
    flat = flat_keys(connections, in_features)
    dense = weight.new_zeros(out_features * in_features).scatter(0, flat, weight)
    return F.linear(x, dense.view(out_features, in_features), bias)
