"""Kernels for a linear map whose weight is a list of (input, output, value) connections.

Two compute paths share one storage format (``weight`` of shape ``(n,)`` and ``connections``
of shape ``(n, 2)``, column 0 the input index, column 1 the output index):

* sparse: CSR @ dense for the forward pass and for the input gradient (with a CSR of the
  transposed weight), and an SDDMM (``torch.sparse.sampled_addmm``) for the weight gradient.
  Cost and memory are O(n + batch * (in + out)).
* dense: scatter the values into an ``(out, in)`` matrix and call ``F.linear``. Faster for
  small, relatively dense layers, and used only for those (see :mod:`synapses.dispatch`).

The products here are plain functions; :mod:`synapses.ops` makes them torch custom
operators with their gradients.

The CSR index structures depend only on the connections, which change only when the layer
evolves, so they are built once per topology (:class:`CSRIndex`) and reused by every call.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import torch

# The dense path allocates an (out, in) matrix per call: never for large layers.
DENSE_MAX_ELEMENTS = 1 << 20
# Batch tiling. A CSR product streams, for each stored weight, one row of its dense operand
# (a batch of values); for a large batch those rows no longer stay in cache between the
# weights that reuse them. Cutting the batch into tiles of SPMM_TILE columns (SDDMM_TILE for
# the weight gradient, whose per-call work is smaller) keeps them there: at 768 -> 3072,
# batch 2048, 90% sparse, one thread, this took forward, input gradient and weight gradient
# from 0.71 to 0.48 of the dense layer's time here (python -m synapses_study.bench). Small batches
# gain nothing and pay the extra calls, so they are not tiled.
TILE_MIN_BATCH = 512
SPMM_TILE = 32
SDDMM_TILE = 128


def _consume_beta_warnings() -> None:
    """torch warns once per process that sparse CSR tensors are "beta" (and, in some
    versions, that ``check_invariants=False`` skips checks). The kernels here are checked
    against dense references and build their indices themselves, so both one-time warnings
    are consumed here, under a local filter: the process's warning filters stay as they are."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for check in (True, False):
            torch.sparse_csr_tensor(
                torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([1.0]), (1, 1), check_invariants=check
            )


_consume_beta_warnings()


@dataclass(frozen=True)
class CSRIndex:
    """Index structures of one topology, built once and reused until the connections change.

    Attributes:
        crow: ``(out + 1,)`` row pointers of the weight in CSR layout (rows are outputs).
        col: ``(n,)`` input index of each CSR entry.
        order: ``(n,)`` position in ``weight`` of each CSR entry (``weight[order]`` is the
            CSR value vector).
        crow_t, col_t, order_t: the same for the transposed weight (rows are inputs).
        shape: ``(out_features, in_features)``.

    Every index tensor is int64, or int32 where built ``compact`` (the compiled kernels
    read either; torch's CSR kernels are given int64). :attr:`inverse` is computed on first
    use: only torch's CSR path needs it.
    """

    crow: torch.Tensor
    col: torch.Tensor
    order: torch.Tensor
    crow_t: torch.Tensor
    col_t: torch.Tensor
    order_t: torch.Tensor
    shape: tuple[int, int]

    @classmethod
    def build(cls, connections: torch.Tensor, in_features: int, out_features: int, compact: bool = False) -> CSRIndex:
        """The index of ``connections`` ``(n, 2)`` (input, output) of an ``in_features x
        out_features`` layer; int32 with ``compact`` where every index fits (see :func:`fits_int32`)."""
        dtype = torch.int32 if compact and fits_int32(len(connections), in_features, out_features) else torch.int64
        inputs, outputs = connections[:, 0], connections[:, 1]
        # one orientation at a time, each key freed once sorted: the int64 temporaries of a
        # large layer's build are what its memory peaks on (keys in int64: an int32 product
        # overflows beyond 2**31 pairs)
        order = torch.argsort(flat_keys(connections, in_features))
        col = inputs[order].to(dtype)
        order = order.to(dtype)
        order_t = torch.argsort(inputs.long() * out_features + outputs)
        col_t = outputs[order_t].to(dtype)
        order_t = order_t.to(dtype)
        return cls(
            crow=_row_pointers(outputs, out_features, dtype),
            col=col,
            order=order,
            crow_t=_row_pointers(inputs, in_features, dtype),
            col_t=col_t,
            order_t=order_t,
            shape=(out_features, in_features),
        )

    @cached_property
    def inverse(self) -> torch.Tensor:
        """``(n,)`` CSR position of each weight (``csr_values[inverse]`` is in weight order);
        a gather is several times cheaper than the equivalent scatter."""
        return torch.argsort(self.order)

    def to(self, dtype: torch.dtype) -> CSRIndex:
        """The same index with every index tensor in ``dtype`` (int32 only where it fits)."""
        return CSRIndex(
            **{f: getattr(self, f).to(dtype) for f in ("crow", "col", "order", "crow_t", "col_t", "order_t")},
            shape=self.shape,
        )

    def transposed(self) -> CSRIndex:
        """The index of the transposed weight ``(in, out)``: the same connections with
        input and output swapped, values still in weight order."""
        out_features, in_features = self.shape
        return CSRIndex(
            crow=self.crow_t,
            col=self.col_t,
            order=self.order_t,
            crow_t=self.crow,
            col_t=self.col,
            order_t=self.order,
            shape=(in_features, out_features),
        )

    def matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """The ``(out, in)`` sparse CSR weight for values ``weight`` of shape ``(n,)``."""
        return torch.sparse_csr_tensor(
            self.crow, self.col, weight.index_select(0, self.order), self.shape, check_invariants=False
        )

    def matrix_t(self, weight: torch.Tensor) -> torch.Tensor:
        """The ``(in, out)`` sparse CSR transposed weight for values ``weight``."""
        return torch.sparse_csr_tensor(
            self.crow_t, self.col_t, weight.index_select(0, self.order_t), self.shape[::-1], check_invariants=False
        )


def flat_keys(connections: torch.Tensor, in_features: int) -> torch.Tensor:
    """``(n,)`` int64 flat keys ``out * in_features + in`` of ``connections`` ``(n, 2)``
    (input, output), in int64 whatever the connections' dtype: an int32 product would
    overflow beyond 2**31 pairs."""
    return connections[:, 1].long() * in_features + connections[:, 0]


def fits_int32(n: int, in_features: int, out_features: int) -> bool:
    """Whether every index of a layer (positions up to ``n``, rows and columns) fits int32."""
    return max(n, in_features, out_features) < 2**31 - 1


def _row_pointers(rows: torch.Tensor, n_rows: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """CSR row pointers ``(n_rows + 1,)`` for entries whose row indices are ``rows``."""
    counts = torch.bincount(rows, minlength=n_rows)
    crow = torch.zeros(n_rows + 1, dtype=dtype, device=rows.device)
    torch.cumsum(counts, 0, out=crow[1:])
    return crow


def csr_product(x: torch.Tensor, weight: torch.Tensor, index: CSRIndex) -> torch.Tensor:
    """``W @ x.T`` ``(rows, batch)``, contiguous, for the CSR weight ``W`` ``(rows, k)`` of
    ``index`` with values ``weight`` ``(n,)`` in weight order, and ``x`` ``(batch, k)``.

    CSR @ dense wants a contiguous right operand, ``x`` transposed; a large batch is cut
    into tiles (see ``TILE_MIN_BATCH``)."""
    matrix = index.matrix(weight)
    if len(x) >= TILE_MIN_BATCH:
        return _csr_times_tiles(matrix, x)
    return torch.sparse.mm(matrix, x.t().contiguous())


def csr_backward(
    grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, index: CSRIndex, need_x: bool, need_w: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The gradients of :func:`csr_product` for ``grad_y`` ``(batch, rows)``: ``dL/dx``
    ``(batch, k)`` (through the transposed CSR) and ``dL/dweight`` ``(n,)`` (SDDMM), each
    ``None`` where not needed. The transposed output gradient is made once for both."""
    matrix = index.matrix(weight)  # the SDDMM's pattern (beta=0: its values are not read)
    grad_x = grad_w = None
    if len(x) >= TILE_MIN_BATCH:  # tiled over the batch
        if need_x:
            grad_x = _csr_times_tiles(index.matrix_t(weight), grad_y).t()
        if need_w:
            grad_w = _sampled_values_tiles(matrix, grad_y, x, index)
    else:
        grad_y_t = grad_y.t().contiguous()  # (rows, batch)
        if need_x:
            grad_x = torch.sparse.mm(index.matrix_t(weight), grad_y_t).t()
        if need_w:
            grad_w = _sampled_values(matrix, grad_y_t, x.t().contiguous(), index)
    return grad_x, grad_w


def sampled_product(grad_y: torch.Tensor, x: torch.Tensor, index: CSRIndex) -> torch.Tensor:
    """``v[k] = sum_b grad_y[b, out_k] * x[b, in_k]`` ``(n,)`` in weight order, for
    ``grad_y`` ``(batch, out)`` and ``x`` ``(batch, in)``: the weight gradient, by SDDMM."""
    pattern = index.matrix(grad_y.new_zeros(len(index.col)))
    if len(x) >= TILE_MIN_BATCH:
        return _sampled_values_tiles(pattern, grad_y, x, index)
    return _sampled_values(pattern, grad_y.t().contiguous(), x.t().contiguous(), index)


def _csr_times_tiles(matrix: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``matrix @ rows.T`` ``(m, batch)`` for a CSR ``matrix`` ``(m, k)`` and ``rows``
    ``(batch, k)``, one tile of ``SPMM_TILE`` batch columns at a time."""
    return torch.cat([torch.sparse.mm(matrix, tile.t().contiguous()) for tile in rows.split(SPMM_TILE)], dim=1)


def _sampled_values(pattern: torch.Tensor, grad_y_t: torch.Tensor, x_t: torch.Tensor, index: CSRIndex) -> torch.Tensor:
    """``(n,)`` values of ``grad_y_t @ x_t.T`` at the connections, in weight order.

    SDDMM: ``beta=0`` ignores the pattern's values; ``x_t.t()`` (column-major x) is the
    layout the CPU kernel reads fastest. ``grad_y_t``: ``(out, batch)``; ``x_t``: ``(in, batch)``.
    """
    sampled = torch.sparse.sampled_addmm(pattern, grad_y_t, x_t.t(), beta=0.0)
    return sampled.values().index_select(0, index.inverse)


def _sampled_values_tiles(
    pattern: torch.Tensor, grad_y: torch.Tensor, x: torch.Tensor, index: CSRIndex
) -> torch.Tensor:
    """:func:`_sampled_values` from ``grad_y`` ``(batch, out)`` and ``x`` ``(batch, in)``,
    summed over tiles of ``SDDMM_TILE`` samples."""
    values = None
    for g_tile, x_tile in zip(grad_y.split(SDDMM_TILE), x.split(SDDMM_TILE)):
        part = torch.sparse.sampled_addmm(pattern, g_tile.t().contiguous(), x_tile, beta=0.0).values()
        values = part if values is None else values.add_(part)
    assert values is not None
    return values.index_select(0, index.inverse)
