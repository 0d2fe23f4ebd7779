"""Speed of SETLayer against the dense masked reference, measured side by side.

    python -m synapses_study.bench [--repeats N] [--threads T] [--device cpu|cuda] [--json FILE] [--no-shapes]
    python -m synapses_study.bench --scale [--hidden N] [--layers L] [--steps S] [--device cpu|cuda]

Every comparison times both sides in this process, interleaved, and reports the ratio of
medians; absolute times depend on the machine, the ratios much less.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synapses import MaskedLinear, SETLayer, SparseNet

from ..setup.config import ExperimentConfig
from ..setup.data import MNISTTensors, load_mnist
from ..training.decay import WeightDecayPolicy
from ..training.engine import evaluate, train_epoch
from .scale import as_dict, scale_run


@dataclass
class Comparison:
    """One benchmark line: ``ours`` vs ``baseline`` in milliseconds (medians)."""

    name: str
    ours_ms: float
    baseline_ms: float
    baseline: str
    target: str

    @property
    def speedup(self) -> float:
        return self.baseline_ms / self.ours_ms


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 5) -> list[float]:
    """Wall-clock milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def interleaved_medians(
    a: Callable[[], object], b: Callable[[], object], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Median ms of ``a`` and of ``b``, timed in alternating rounds so drift hits both."""
    ms_a, ms_b = interleaved_medians_of([a, b], repeats, device)
    return ms_a, ms_b


def interleaved_medians_of(fns: Sequence[Callable[[], object]], repeats: int, device: torch.device) -> list[float]:
    """Median ms of each of ``fns``, timed in turns (rounds of ``repeats / 5`` calls each;
    :func:`timed_calls` of them per function)."""
    times: list[list[float]] = [[] for _ in fns]
    rounds = min(5, repeats)
    warmup = 1 if repeats < 10 else 5
    for _ in range(rounds):
        for fn, fn_times in zip(fns, times):
            fn_times += time_ms(fn, max(1, repeats // rounds), device, warmup)
    assert all(len(t) == timed_calls(repeats) for t in times)
    return [statistics.median(t) for t in times]


def timed_calls(repeats: int) -> int:
    """How many calls :func:`interleaved_medians_of` times per function for ``repeats``."""
    rounds = min(5, repeats)
    return rounds * max(1, repeats // rounds)


def masked_copy(net: SparseNet) -> nn.Module:
    """The same network with every SETLayer replaced by its dense masked equivalent."""
    # Same epsilon (a default one may not fit the sizes) and dtype (loading float64 values
    # into float32 parameters would round them) as ``net``.
    param, first = next(net.parameters()), net.sparse_layers()[0]
    dense = SparseNet(net.sizes, epsilon=first.epsilon, zeta=first.zeta).to(device=param.device, dtype=param.dtype)
    dense.load_state_dict(net.state_dict())
    dense.set_layers = nn.ModuleList(MaskedLinear.from_set_layer(layer) for layer in net.sparse_layers())
    return dense


def _train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> Callable[[], None]:
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.nll_loss(model(x), y).backward()
        optimizer.step()

    return step


def bench_train_step(repeats: int, device: torch.device, batch: int = 128) -> Comparison:
    """Forward, backward and SGD step of the 784-512-128-10 SparseNet."""
    torch.manual_seed(0)
    net = SparseNet().to(device)
    ref = masked_copy(net)
    x = torch.randn(batch, 784, device=device)
    y = torch.randint(10, (batch,), device=device)
    ours = _train_step(net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.5), x, y)
    base = _train_step(ref, torch.optim.SGD(ref.parameters(), lr=0.01, momentum=0.5), x, y)
    ours_ms, base_ms = interleaved_medians(ours, base, repeats, device)
    return Comparison("SparseNet train step, batch 128", ours_ms, base_ms, "dense masked net", "ratio <= 1.0")


def bench_compute_choice(repeats: int, device: torch.device, batch: int = 128) -> list[Comparison]:
    """The SparseNet training step with kernels chosen by measurement (``compute="measure"``)
    against the fixed density rule and against CSR kernels everywhere, at this thread count."""
    nets = {}
    for compute in ("measure", "fixed", "sparse"):
        torch.manual_seed(0)
        nets[compute] = SparseNet(compute=compute).to(device)
    x = torch.randn(batch, 784, device=device)
    y = torch.randint(10, (batch,), device=device)
    steps = {
        k: _train_step(net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.5), x, y) for k, net in nets.items()
    }
    steps["measure"]()  # the first call measures
    threads = torch.get_num_threads()
    results = []
    for other in ("fixed", "sparse"):
        ours_ms, base_ms = interleaved_medians(steps["measure"], steps[other], repeats, device)
        results.append(
            Comparison(
                f"SparseNet step, measured kernels vs {other}, {threads} thr",
                ours_ms,
                base_ms,
                f'compute="{other}"',
                "ratio <= 1.0",
            )
        )
    return results


def bench_large_layer(repeats: int, device: torch.device, size: int = 4096, batch: int = 128) -> Comparison:
    """Forward and backward of one ``size x size`` layer, epsilon 20."""
    torch.manual_seed(0)
    layer = SETLayer(size, size, epsilon=20, device=device)
    ref = MaskedLinear.from_set_layer(layer)
    x = torch.randn(batch, size, device=device)

    def fwd_bwd(module: nn.Module) -> Callable[[], None]:
        def run() -> None:
            module.zero_grad(set_to_none=True)
            module(x).sum().backward()

        return run

    ours_ms, base_ms = interleaved_medians(fwd_bwd(layer), fwd_bwd(ref), max(2, repeats // 10), device)
    return Comparison(f"{size}x{size} layer fwd+bwd, eps 20", ours_ms, base_ms, "dense masked layer", "speedup >= 10")


def bench_evolution(repeats: int, device: torch.device) -> list[Comparison]:
    """``evolve_connections()`` and construction of SETLayer(784, 512), in absolute ms.

    The baseline column holds the original library's cost on this kind of machine
    (about 300 ms and 450 ms, from the reference measurements), for scale.
    """
    torch.manual_seed(0)
    layer = SETLayer(784, 512, device=device)
    evolve = statistics.median(time_ms(layer.evolve_connections, repeats, device))
    build = statistics.median(time_ms(lambda: SETLayer(784, 512, device=device), repeats, device))
    return [
        Comparison("evolve_connections(), 784x512", evolve, 300.0, "synapses 0.0.13 (reported)", "< 5 ms"),
        Comparison("construction, 784x512", build, 450.0, "synapses 0.0.13 (reported)", "< 10 ms"),
    ]


def _reference_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, data, batch: int, generator: torch.Generator
) -> None:
    """A straightforward epoch: per-batch indexing, train, then evaluate (no evolution)."""
    model.train()
    order = torch.randperm(len(data.train_y), generator=generator)
    for index in order.split(batch):
        optimizer.zero_grad()
        F.nll_loss(model(data.train_x[index]), data.train_y[index]).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        for start in range(0, len(data.test_y), batch):
            model(data.test_x[start : start + batch]).argmax(1)


def bench_epoch(repeats: int, device: torch.device, train_size: int | None = None) -> Comparison:
    """One SparseNet epoch of the engine (train, zero, evaluate, evolve) on MNIST against
    the straightforward loop over the dense masked net (which does no evolution)."""
    data = load_mnist()
    if train_size is not None:
        data = MNISTTensors(
            data.train_x[:train_size],
            data.train_y[:train_size],
            data.test_x[: train_size // 6],
            data.test_y[: train_size // 6],
        )
    torch.manual_seed(0)
    config = ExperimentConfig()
    net = SparseNet()
    ref = masked_copy(net)
    ours_opt = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=config.lr, momentum=config.momentum)
    generator = torch.Generator().manual_seed(0)

    def ours() -> None:
        net.evolve_connections(optimizer=ours_opt)
        train_epoch(net, ours_opt, data, config.batch_size, WeightDecayPolicy.of(config), 1, generator)
        net.zero_connections()
        evaluate(net, data.test_x, data.test_y, config.batch_size)

    # Both sides with the engine's thread count (1: two runs share this machine's two cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        ours_ms, base_ms = interleaved_medians(
            ours, lambda: _reference_epoch(ref, ref_opt, data, config.batch_size, generator), repeats, device
        )
    finally:
        torch.set_num_threads(threads)
    size = len(data.train_y)
    return Comparison(
        f"SparseNet epoch ({size // 1000}k images, {config.threads} thread)",
        ours_ms,
        base_ms,
        "plain loop, dense masked net",
        "<= 1.5 s",
    )


# SparseProp's benchmark shapes (in, out, batch) and the fractions of dense nn.Linear's
# forward + backward time that the project's performance goal quoted for SparseProp at 98%,
# 95% and 90% sparsity. They are printed only where SparseProp is not installed; where it is
# (`pip install pybind11 && pip install --no-build-isolation sparseprop`), it is timed
# side by side with ours and dense instead.
SPARSEPROP_SHAPES = {(768, 3072, 2048): (0.18, 0.34, 0.56), (512, 256, 128): (0.37, 0.46, 0.59)}
SPARSITIES = (0.98, 0.95, 0.90)


def bench_linear_shapes(repeats: int, device: torch.device, quick: bool = False) -> list[Comparison]:
    """Forward + backward (input and weight gradients) of one SETLayer against dense
    ``nn.Linear`` with the same weights, at SparseProp's shapes and sparsities, and of
    SparseProp's and SparseLab's ``SparseLinear`` on those weights where each is installed
    (CPU), in the same interleaved rounds. The target
    column gives SparseProp's time as a fraction of dense; ours is ``1 / speedup``, with
    the path ``compute="measure"`` chose. One thread, as SparseProp's numbers were measured."""
    results = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for shape, fractions in SPARSEPROP_SHAPES.items():
            results += _bench_shape(*shape, fractions, repeats, device, quick)
    finally:
        torch.set_num_threads(threads)
    return results


def sparseprop_linear(dense: nn.Linear) -> nn.Module | None:
    """SparseProp's ``SparseLinear`` with ``dense``'s nonzero weights and bias, or ``None``
    where SparseProp is not installed (it runs on the CPU, in float32)."""
    # Its kernels run OpenMP loops in the process's OpenMP runtime, which torch loaded:
    # torch.set_num_threads(1) holds them to one thread too (checked here: CPU time equals
    # wall time with OMP_NUM_THREADS=2).
    try:
        from sparseprop.modules import SparseLinear
    except ImportError:
        return None
    return SparseLinear.from_dense(dense)


def sparselab_linear(dense: nn.Linear) -> nn.Module | None:
    """SparseLab's ``SparseLinear`` (its padded-CSR storage and SIMD kernels) holding
    ``dense``'s nonzero weights and bias, or ``None`` where SparseLab is not installed
    (``pip install sparselab``; CPU, float32)."""
    try:
        import sparselab
        from sparselab import layout
    except ImportError:
        return None
    weight = dense.weight.detach().cpu().float()
    density = float((weight != 0).float().mean())
    peer = sparselab.SparseLinear(dense.in_features, dense.out_features, sparsity=min(1 - density, 0.999))
    # its constructor draws its own weights; these take their place: the values parameter
    # shares memory with the padded CSR's value buffer, as SparseLab's own layer keeps it
    peer._csr = layout.from_dense(weight, padding_ratio=peer.padding_ratio)
    peer._values = nn.Parameter(torch.from_numpy(np.asarray(peer._csr.values)))
    with torch.no_grad():
        peer.bias.copy_(dense.bias)
    return peer


def peer_layers(dense: nn.Linear) -> dict[str, nn.Module]:
    """The peers installed here, each holding ``dense``'s nonzero weights, by name."""
    made = {"SparseProp": sparseprop_linear(dense), "SparseLab": sparselab_linear(dense)}
    return {name: module for name, module in made.items() if module is not None}


def _bench_shape(
    n_in: int, n_out: int, batch: int, fractions: tuple[float, ...], repeats: int, device: torch.device, quick: bool
) -> list[Comparison]:
    """One of SparseProp's shapes at its three sparsities."""
    results = []
    batch = min(batch, 256) if quick else batch
    for sparsity, fraction in zip(SPARSITIES, fractions):
        torch.manual_seed(0)
        layer = SETLayer(n_in, n_out, sparsity=sparsity, device=device)
        dense = nn.Linear(n_in, n_out, device=device)
        with torch.no_grad():
            dense.weight.copy_(layer.to_dense())
            if layer.bias is not None:
                dense.bias.copy_(layer.bias)
        peers = peer_layers(dense) if device.type == "cpu" else {}
        x = torch.randn(batch, n_in, device=device, requires_grad=True)

        def fwd_bwd(module: nn.Module) -> Callable[[], None]:
            def run() -> None:  # timed within this shape's iteration, so x is this shape's input
                module.zero_grad(set_to_none=True)
                x.grad = None  # noqa: B023
                module(x).sum().backward()  # noqa: B023

            return run

        # A step of the small shape takes under a millisecond: many more repeats for a
        # stable median than for the large one (a quarter of a second per dense step).
        rounds = repeats if n_in * n_out * batch < 1 << 26 else max(3, repeats // 20)
        modules = [layer, dense, *peers.values()]
        ours_ms, base_ms, *peer_ms = interleaved_medians_of([fwd_bwd(m) for m in modules], rounds, device)
        name = f"{n_in}->{n_out}, batch {batch}, {100 * sparsity:.0f}% sparse"
        if peers:
            measured = ", ".join(
                f"{peer} {ms / base_ms:.2f} of dense (ours takes {ours_ms / ms:.2f} of its time)"
                for peer, ms in zip(peers, peer_ms)
            )
            kernels = layer.kernel_for(batch)
            note = f"timed alongside: {measured}; ours {ours_ms / base_ms:.2f} of dense ({kernels} kernels)"
        else:
            note = (
                f"SparseProp {fraction:.2f} of dense (as reported), ours {ours_ms / base_ms:.2f} "
                f"({layer.kernel_for(batch)} kernels)"
            )
        results.append(Comparison(name, ours_ms, base_ms, "dense nn.Linear, 1 thread", note))
    return results


def run_all(
    repeats: int = 200, device: str = "cpu", quick: bool = False, epochs: bool = True, shapes: bool = True
) -> list[Comparison]:
    """Every comparison; ``quick`` shrinks them to seconds (for smoke runs, not for numbers)."""
    dev = torch.device(device)
    results = [
        bench_train_step(repeats, dev),
        *bench_compute_choice(repeats, dev),
        bench_large_layer(repeats, dev, size=1024 if quick else 4096),
        *bench_evolution(repeats, dev),
    ]
    if shapes:
        results += bench_linear_shapes(repeats, dev, quick)
    if epochs and dev.type == "cpu":
        results.append(bench_epoch(1 if quick else 5, dev, train_size=3000 if quick else None))
    return results


def format_table(results: list[Comparison]) -> str:
    lines = [f"{'benchmark':<40} {'ours ms':>9} {'baseline ms':>12} {'speedup':>8}  target  (baseline)"]
    for r in results:
        lines.append(
            f"{r.name:<40} {r.ours_ms:>9.3f} {r.baseline_ms:>12.3f} {r.speedup:>7.1f}x  {r.target}  ({r.baseline})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m synapses_study.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per measurement (default 200)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds in all (a smoke test, not numbers)")
    parser.add_argument("--no-epoch", action="store_true", help="skip the whole-epoch comparison (loads MNIST)")
    parser.add_argument("--no-shapes", action="store_true", help="skip SparseProp's six layer shapes against nn.Linear")
    parser.add_argument(
        "--shapes-only", action="store_true", help="only SparseProp's six layer shapes against nn.Linear"
    )
    scale = parser.add_argument_group("--scale: train a large SET-MLP on MNIST instead (synapses_study.bench.scale)")
    scale.add_argument(
        "--scale",
        action="store_true",
        help="time steps, an evolution and an epoch of a 784-N x L-10 SET-MLP; report peak memory",
    )
    scale.add_argument("--hidden", type=int, default=250_000, help="neurons per hidden layer (default 250,000)")
    scale.add_argument("--layers", type=int, default=4, help="hidden layers (default 4)")
    scale.add_argument(
        "--steps",
        type=int,
        default=None,
        help="time this many steps and extrapolate the epoch (default: a whole epoch)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.scale:
        result = scale_run(args.hidden, args.layers, args.steps, device=args.device)
        print(result.line())
        if args.json:
            with open(args.json, "w") as f:
                json.dump(as_dict(result), f, indent=2)
        return
    if args.shapes_only:
        results = bench_linear_shapes(args.repeats, torch.device(args.device), args.quick)
    else:
        results = run_all(
            args.repeats, args.device, quick=args.quick, epochs=not args.no_epoch, shapes=not args.no_shapes
        )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
        f"{platform.processor() or platform.machine()}"
    )
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) | {"speedup": r.speedup} for r in results], f, indent=2)


if __name__ == "__main__":
    main()
