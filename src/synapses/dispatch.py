"""Which compute path a layer takes: by a rule (``compute="auto"``, ``"fixed"``) or by
measurement (``compute="measure"``).

Three paths share the layer's sparse storage: ``"dense"`` (scatter into a matrix, then a
dense matmul), ``"sparse"`` (torch's CSR kernels) and, on the CPU, ``"native"`` (this
package's compiled kernels, :mod:`synapses.native`). Which is fastest depends on the
layer's shape and density, the batch, the dtype, the machine and the number of threads (at
one thread the sparse kernels win where several threads make the dense matmul win).
``"measure"`` therefore times one training step (forward and backward) of each path on random
data of the layer's shape, once per (shape, connections, batch size rounded up to a power
of two, dtype, device, threads), and keeps the fastest. The measurement draws from a
private generator: it never touches the caller's random state.

A measured choice can differ between machines and between processes (timing noise decides
near a tie), and the two paths round differently, so ``"measure"`` is not for bit-identical
reruns; ``"fixed"`` (the rule below, the same everywhere), ``"sparse"`` or ``"dense"`` are.
Measuring costs seconds per new batch size and is opt-in, as ``torch.backends.cudnn.benchmark``
is. The default, ``"auto"``, decides by a rule at no cost. On the CPU with the compiled
kernels built: dense for layers small enough to densify whose density reaches
:data:`AUTO_DENSE_MIN_DENSITY` at the current thread count (below it the compiled kernels
beat dense in the geometric mean over the shapes ``python -m synapses_study.bench.auto_rule``
measured), the compiled kernels otherwise. Elsewhere (a GPU, or no compiler): the fixed rule's choice between dense
and the CSR kernels. The rule reads the thread count, never a clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from . import native, ops
from .sparse_ops import DENSE_MAX_ELEMENTS

# (x (batch, in), weight (n,), bias (out,) or None, connections (n, 2), out_features) -> (batch, out)
Kernel = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", torch.Tensor, int], torch.Tensor]
KERNELS: dict[str, Kernel] = {"dense": ops.dense_linear, "sparse": ops.sparse_linear, "native": ops.native_linear}

# The fixed rule: the CSR kernels below this density (measured once by synapses_study.bench.kernels, at
# the thread count of a laptop), the dense ones above it, for layers small enough to densify.
DENSE_MIN_DENSITY = 0.06
REPEATS = 5  # timed steps per path; the fastest counts
# Layers with more connections than this are not timed (a step takes seconds there). On the
# CPU they take the compiled kernels, which are faster than the CSR ones at every such layer
# measured (20,000 x 20,000 and 250,000 x 250,000 at epsilon 20, batch 128, one thread:
# docs/performance.md), elsewhere the CSR kernels.
MEASURE_MAX_PARAMS = 1 << 22

# compute="auto" on the CPU with the compiled kernels: dense from this density on, by torch's
# thread count (more threads than measured: the most measured). From it on, dense's forward and
# backward beat the compiled kernels' in the geometric mean over the shapes of
# python -m synapses_study.bench.auto_rule (docs/benchmarks/auto_rule.json, batch 128, densities
# 0.05 to 1); below it the compiled kernels were faster in that mean.
AUTO_DENSE_MIN_DENSITY = {1: 0.5, 2: 0.5}

_measured: dict[tuple, str] = {}


def fixed_rule_is_dense(in_features: int, out_features: int, n_params: int, device: torch.device) -> bool:
    """The machine-independent rule: dense for layers of at most ``DENSE_MAX_ELEMENTS``
    weights with a density of at least ``DENSE_MIN_DENSITY`` (on a GPU: every such layer)."""
    elements = in_features * out_features
    if elements > DENSE_MAX_ELEMENTS:
        return False
    return device.type != "cpu" or n_params / elements >= DENSE_MIN_DENSITY


def auto_dense_min_density(threads: int) -> float:
    """:data:`AUTO_DENSE_MIN_DENSITY` at ``threads`` (at least 1; above the measured counts, the largest)."""
    return AUTO_DENSE_MIN_DENSITY[min(max(threads, 1), max(AUTO_DENSE_MIN_DENSITY))]


def auto_kernel(
    in_features: int, out_features: int, n_params: int, device: torch.device, threads: int | None = None
) -> str:
    """``compute="auto"``'s path at ``threads`` (default: torch's current count): decided by
    rule, never timed (see the module's docstring)."""
    if device.type == "cpu" and native.available():
        elements = in_features * out_features
        threads = torch.get_num_threads() if threads is None else threads
        if elements <= DENSE_MAX_ELEMENTS and n_params / elements >= auto_dense_min_density(threads):
            return "dense"
        return "native"
    return "dense" if fixed_rule_is_dense(in_features, out_features, n_params, device) else "sparse"


def candidates(in_features: int, out_features: int, device: torch.device) -> list[str]:
    """The paths ``"measure"`` chooses from: dense only for layers small enough to densify,
    the compiled kernels only on the CPU and where they can be built."""
    names = ["dense"] if in_features * out_features <= DENSE_MAX_ELEMENTS else []
    names.append("sparse")
    if device.type == "cpu" and native.available():
        names.append("native")
    return names


def measured_kernel(
    in_features: int, out_features: int, n_params: int, batch: int, device: torch.device, dtype: torch.dtype
) -> str:
    """The path (a key of :data:`KERNELS`) that ran a training step fastest for this layer
    and batch, measured on the first call, then remembered. Layers of more than
    ``MEASURE_MAX_PARAMS`` connections are not measured (see there)."""
    bucket = 1 << max(batch - 1, 0).bit_length()  # 1, 2, 4, ... : one measurement per size class
    key = (in_features, out_features, n_params, bucket, dtype, device.type, device.index, torch.get_num_threads())
    if key not in _measured:  # looked up first: this runs on every forward call
        names = candidates(in_features, out_features, device)
        if len(names) == 1 or n_params > MEASURE_MAX_PARAMS:
            _measured[key] = names[-1]
        else:
            seconds = _fastest_steps(names, key)
            _measured[key] = min(names, key=seconds.__getitem__)  # the first listed wins a tie
    return _measured[key]


def forget_measurements() -> None:
    """Drop every remembered choice (the next call of each layer measures again)."""
    _measured.clear()


def _fastest_steps(names: list[str], key: tuple) -> dict[str, float]:
    """Seconds of the fastest of ``REPEATS`` forward + backward steps of each path in
    ``names``, on random connections of the layer's size. The paths take turns, step by
    step, so that a slow spell of a shared machine hits them all alike."""
    in_features, out_features, n_params, batch, dtype, device_type, device_index, _ = key
    device = torch.device(device_type, device_index)
    generator = torch.Generator().manual_seed(0)
    pairs = _random_pairs(in_features * out_features, n_params, generator)
    connections = torch.stack([pairs % in_features, pairs // in_features], dim=1).to(device)
    weight = torch.randn(len(pairs), generator=generator, dtype=dtype).to(device).requires_grad_()
    x = torch.randn(batch, in_features, generator=generator, dtype=dtype).to(device).requires_grad_()
    grad = torch.randn(batch, out_features, generator=generator, dtype=dtype).to(device)
    best = dict.fromkeys(names, float("inf"))
    with torch.enable_grad():
        for repeat in range(REPEATS + 1):  # the first round is a warm-up
            for name in names:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                torch.autograd.backward(KERNELS[name](x, weight, None, connections, out_features), grad)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if repeat:
                    best[name] = min(best[name], time.perf_counter() - start)
                x.grad = weight.grad = None
    return best


def _random_pairs(n_pairs: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """About ``n`` distinct flat keys in ``[0, n_pairs)``: exactly ``n`` from a permutation
    where that is cheap, else ``n`` draws with their (few) repeats removed."""
    if n_pairs <= 1 << 24:
        return torch.randperm(n_pairs, generator=generator)[:n]
    return torch.unique(torch.randint(n_pairs, (n,), generator=generator))
