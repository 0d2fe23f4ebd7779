"""How large a SET-MLP trains here: ``python -m synapses_study.bench --scale``.

Trains a 784 - N x L - 10 SparseNet (``--hidden N`` neurons in each of ``--layers L``
hidden layers, epsilon 20, SGD with momentum 0.9, batch 128) on MNIST and reports its
connections, the time of a training step, of one evolution of every SET layer and of an
epoch, and the peak memory of the process. With ``--steps S`` only S steps are timed and
the epoch (469 steps) is extrapolated from their mean: on a CPU a network of millions of
neurons takes hours per epoch.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from synapses import SparseNet

from ..setup.data import load_mnist

BATCH = 128


@dataclass
class ScaleResult:
    hidden: int  # neurons per hidden layer
    layers: int
    connections: int  # of the SET layers and the dense readout
    device: str
    threads: int
    steps_timed: int
    step_ms: float  # mean training step (forward, backward, SGD)
    epoch_s: float  # 60,000 images: measured if every step ran, else step_ms x steps
    epoch_measured: bool
    evolution_ms: float  # zero_connections + evolve_connections of every SET layer
    peak_memory_gib: float  # CPU: peak resident set of the process; GPU: peak allocated
    kernels: str = ""  # the compute path of each SET layer at the batch, e.g. "native, native, native, native"

    def line(self) -> str:
        epoch = f"{self.epoch_s:.1f} s" + (
            "" if self.epoch_measured else f" (extrapolated from {self.steps_timed} steps)"
        )
        return (
            f"{self.layers} x {self.hidden:,} hidden neurons ({self.hidden * self.layers:,}), {self.connections:,} "
            "connections, "
            f"{self.device} {self.threads} thread(s): step {self.step_ms:.1f} ms, epoch {epoch}, evolution "
            f"{self.evolution_ms:.0f} ms, "
            f"peak memory {self.peak_memory_gib:.2f} GiB"
        )


def _peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def scale_run(
    hidden: int, layers: int = 4, steps: int | None = None, epsilon: float = 20, device: str = "cpu", seed: int = 0
) -> ScaleResult:
    """Train the network for ``steps`` steps (``None``: one epoch) and time it; see the module."""
    dev = torch.device(device)
    torch.manual_seed(seed)
    data = load_mnist()
    # the default compute path: what a user's network of this size takes (the compiled
    # kernels on a CPU where they are built)
    net = SparseNet((784, *[hidden] * layers, 10), epsilon, generator=torch.Generator().manual_seed(seed)).to(dev)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    order = torch.randperm(len(data.train_y))
    batches = len(order) // BATCH + (len(order) % BATCH > 0)
    n_steps = batches if steps is None else min(steps, batches)
    x_all, y_all = data.train_x.to(dev), data.train_y.to(dev)
    elapsed = 0.0
    for step in range(n_steps + 1):  # step 0 warms up (builds the CSR indices), untimed
        idx = order[(step % batches) * BATCH : (step % batches + 1) * BATCH].to(dev)
        x, y = x_all.index_select(0, idx), y_all.index_select(0, idx)
        _sync(dev)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.nll_loss(net(x), y).backward()
        optimizer.step()
        _sync(dev)
        if step:
            elapsed += time.perf_counter() - start
    _sync(dev)
    start = time.perf_counter()
    net.zero_connections()
    net.evolve_connections(optimizer=optimizer)
    _sync(dev)
    evolution = time.perf_counter() - start
    step_s = elapsed / n_steps
    return ScaleResult(
        hidden,
        layers,
        sum(layer.n_params for layer in net.sparse_layers()) + net.readout.weight.numel(),
        dev.type,
        torch.get_num_threads(),
        n_steps,
        step_s * 1e3,
        step_s * batches,
        n_steps == batches,
        evolution * 1e3,
        _peak_memory_gib(dev),
        ", ".join(layer.kernel_for(BATCH) for layer in net.sparse_layers()),
    )


def as_dict(result: ScaleResult) -> dict:
    return asdict(result)


BLOCK = "scale"  # docs/performance.md's generated block


def render(files: list[dict]) -> str:
    """The docs block: one row per result file ``bench --scale --json`` wrote."""
    lines = [
        "| hidden neurons | connections | kernels | threads | step | epoch (469 steps) | evolution | peak memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for data in files:
        try:
            result = ScaleResult(**data)
        except TypeError as error:
            raise ValueError(f"not a scale result file ({error})") from None
        epoch = f"{result.epoch_s / 3600:.1f} hours" + (
            "" if result.epoch_measured else f" (from {result.steps_timed} steps)"
        )
        lines.append(
            f"| {result.layers} x {result.hidden:,} | {result.connections:,} | {result.kernels or 'not recorded'} | "
            f"{result.threads} | "
            f"{result.step_ms / 1e3:.1f} s | {epoch} | {result.evolution_ms / 1e3:.1f} s | "
            f"{result.peak_memory_gib:.1f} GiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m synapses_study.bench.scale --from-json FILE... [--write-docs FILE]``: render
    results of ``python -m synapses_study.bench --scale --json FILE``."""
    import argparse
    import json
    import sys
    from pathlib import Path

    from .docs_blocks import publish

    parser = argparse.ArgumentParser(prog="python -m synapses_study.bench.scale", description="render --scale results")
    parser.add_argument("--from-json", type=Path, nargs="+", required=True, help="result files of bench --scale --json")
    parser.add_argument("--write-docs", type=Path, default=None, help="fill this Markdown file's scale block")
    args = parser.parse_args(argv)
    try:
        publish(render([json.loads(path.read_text()) for path in args.from_json]), args.write_docs, BLOCK)
    except (OSError, ValueError) as error:
        print(f"scale: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
