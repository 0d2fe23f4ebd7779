"""Bytes per connection at the peak of training, with the activations apart.

    python -m synapses_study.bench.memory [--width 4096] [--layers 5] [--sparsity 0.9] [--batch 128]
    python -m synapses_study.bench.memory --width 250000 --layers 4 --epsilon 20 --input 784
    python -m synapses_study.bench.memory --from-json FILE... --write-docs docs/performance.md

Builds a stack of ``--layers`` SETLayers (``--input`` -> ``--width`` -> ... -> ``--width``,
ReLU between, the default ``compute``) and trains it on random data with SGD and momentum
0.9: ``--steps`` steps, an evolution of every layer (optimizer state reset for the moved
weights), and ``--steps`` steps again (the index is rebuilt for the new topology). Each
measurement runs in a fresh process: its peak resident memory (``ru_maxrss``) above its
resident memory just before the model is built.

That peak holds costs that do not grow with the connections: the activations (batch x
widths), and the pages of torch's code a first large step brings in. So the same widths and
batch are trained twice, at the density asked for and at half of it: the difference in peak
over the difference in connections is what a connection costs (values, gradients, momentum,
connections, the pruned flags, the kernels' indices and every temporary of a step or an
evolution, allocator slack included), and what is left at zero connections the fixed part.

Beside that estimate, exact and without noise: the bytes of the tensors a connection keeps
alive after the last step (``SETLayer.memory_bytes`` of every layer and the optimizer's
momentum), by part. A slope below that total is not a reading of the peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from synapses import SETLayer

from ..runs.run_files import write_atomic
from .docs_blocks import publish

BLOCK = "memory"  # docs/performance.md's generated block


@dataclass(frozen=True)
class Spec:
    """What is trained: the widths, how sparse, the batch, how many steps."""

    input: int = 4096
    width: int = 4096
    layers: int = 5
    sparsity: float | None = 0.9
    epsilon: float = 20.0
    batch: int = 128
    steps: int = 3


@dataclass(frozen=True)
class Measurement:
    """One process's figures (bytes)."""

    connections: int
    peak_bytes: int  # peak resident memory above the resident memory before the model was built
    parameter_bytes: int  # weights and biases as allocated
    live_bytes: dict[str, int]  # after the last step, by part: SETLayer.memory_bytes's and "momentum"


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _model(spec: Spec) -> nn.Sequential:
    widths = [spec.input] + [spec.width] * spec.layers
    parts: list[nn.Module] = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        parts += [SETLayer(n_in, n_out, epsilon=spec.epsilon, sparsity=spec.sparsity), nn.ReLU()]
    return nn.Sequential(*parts[:-1])


def measure_here(spec: Spec) -> Measurement:
    """Train ``spec`` in this process and measure it (call it in a fresh process: the peak
    is the process's)."""
    torch.manual_seed(0)
    warm = SETLayer(64, 64, sparsity=0.5)  # loads the kernels and torch's lazy state first
    warm(torch.randn(2, 64)).sum().backward()
    del warm
    before = _resident_bytes()
    model = _model(spec)
    layers = [m for m in model if isinstance(m, SETLayer)]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(spec.batch, spec.input)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        optimizer.step()

    for _ in range(spec.steps):
        step()
    for layer in layers:
        layer.evolve_connections(optimizer=optimizer)
    for _ in range(spec.steps):
        step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before  # kB on Linux
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    return Measurement(sum(layer.n_params for layer in layers), peak, parameters, live_bytes(layers, optimizer))


def live_bytes(layers: list[SETLayer], optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """What ``layers`` hold now, summed by part (:meth:`SETLayer.memory_bytes`), and the
    momentum ``optimizer`` keeps for their weights and biases."""
    parts: dict[str, int] = {}
    for layer in layers:
        for part, size in layer.memory_bytes().items():
            parts[part] = parts.get(part, 0) + size
    buffers = [optimizer.state[p].get("momentum_buffer") for layer in layers for p in layer.parameters()]
    parts["momentum"] = sum(b.numel() * b.element_size() for b in buffers if b is not None)
    return parts


def measure(spec: Spec) -> Measurement:
    """:func:`measure_here` in a fresh Python process."""
    code = (
        "import json, sys; from synapses_study.bench.memory import Spec, measure_here; from dataclasses import asdict; "
        "print(json.dumps(asdict(measure_here(Spec(**json.loads(sys.argv[1]))))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(asdict(spec))], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the measurement process failed:\n{done.stderr.strip()[-2000:]}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


def halved(spec: Spec) -> Spec:
    """``spec`` at half its density (same widths and batch)."""
    if spec.sparsity is not None:
        return Spec(**(asdict(spec) | {"sparsity": 1 - (1 - spec.sparsity) / 2}))
    return Spec(**(asdict(spec) | {"epsilon": spec.epsilon / 2}))


def report(spec: Spec) -> dict[str, Any]:
    """The peak of ``spec`` and of :func:`halved` ``spec``: bytes per connection (the slope
    between them) and the fixed part (activations and code pages: the intercept)."""
    full, half = measure(spec), measure(halved(spec))
    per_connection = (full.peak_bytes - half.peak_bytes) / (full.connections - half.connections)
    return {
        "live_bytes_per_connection": {part: size / full.connections for part, size in full.live_bytes.items()},
        "connections": full.connections,
        "peak_gib": full.peak_bytes / 2**30,
        "bytes_per_connection": per_connection,
        "fixed_gib": (full.peak_bytes - per_connection * full.connections) / 2**30,
        "half_connections": half.connections,
        "half_peak_gib": half.peak_bytes / 2**30,
    }


def render(files: list[dict[str, Any]]) -> str:
    """The docs block: one row per measurement file :func:`main` wrote."""
    lines = [
        "| layers | connections | batch | threads | peak above the start | at half the density "
        "| bytes per connection | fixed part (activations, code) | live after training / connections (exact) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for data in files:
        try:
            spec = Spec(**data["spec"])
            density = f"sparsity {spec.sparsity:g}" if spec.sparsity is not None else f"epsilon {spec.epsilon:g}"
            slope = data["bytes_per_connection"]
            live = data["live_bytes_per_connection"]
            below = slope < sum(live.values())
            largest_first = sorted(live.items(), key=lambda kv: -kv[1])
            parts = ", ".join(f"{part} {size:.1f}" for part, size in largest_first if size >= 0.05)
            per_connection = f"({slope:.1f}: below the live tensors, no reading)" if below else f"{slope:.1f}"
            fixed = "–" if below else f"{data['fixed_gib']:.2f} GiB"
            lines.append(
                f"| {spec.layers} x ({spec.input} -> {spec.width}, ...), {density} | {data['connections']:,} | "
                f"{spec.batch} | {data.get('threads', 'not recorded')} | {data['peak_gib']:.2f} GiB | "
                f"{data['half_peak_gib']:.2f} GiB ({data['half_connections']:,}) | {per_connection} | {fixed} | "
                f"{sum(live.values()):.1f} ({parts}) |"
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a memory measurement file ({error})") from None
    commands = "; ".join(f"`{data['command']}`" for data in files)
    return "\n".join(lines) + f"\n\nMeasured by {commands}."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synapses_study.bench.memory", description=__doc__.split("\n")[0])
    defaults = Spec()
    parser.add_argument("--input", type=int, default=defaults.input, help="input width (default 4096)")
    parser.add_argument("--width", type=int, default=defaults.width, help="width of every layer (default 4096)")
    parser.add_argument("--layers", type=int, default=defaults.layers, help="SET layers (default 5)")
    parser.add_argument("--sparsity", type=float, default=None, help="sparsity (default 0.9 unless --epsilon is given)")
    parser.add_argument("--epsilon", type=float, default=None, help="Erdős–Rényi epsilon instead of a sparsity")
    parser.add_argument("--batch", type=int, default=defaults.batch, help="batch size (default 128)")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="steps before and after the evolution (3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None, help="render these files instead")
    parser.add_argument("--write-docs", type=Path, default=None, help="fill this Markdown file's memory block")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        try:
            files = [json.loads(path.read_text()) for path in args.from_json]
            publish(render(files), args.write_docs, BLOCK)
        except (OSError, ValueError) as error:
            print(f"memory: {error}", file=sys.stderr)
            return 2
        return 0
    for name in ("input", "width", "layers", "batch", "steps"):
        if getattr(args, name) < 1:
            print(f"memory: --{name} must be a positive integer, got {getattr(args, name)}", file=sys.stderr)
            return 2
    sparsity = None if args.epsilon is not None else (0.9 if args.sparsity is None else args.sparsity)
    epsilon = args.epsilon if args.epsilon is not None else defaults.epsilon
    spec = Spec(args.input, args.width, args.layers, sparsity, epsilon, args.batch, args.steps)
    figures = report(spec)
    described = f"sparsity {sparsity}" if sparsity is not None else f"epsilon {epsilon:g}"
    print(
        f"{args.layers} SET layers {args.input} -> {args.width} ... ({described}), batch {args.batch}, "
        "SGD with momentum, "
        f"{args.steps} steps, an evolution, {args.steps} steps; torch threads {torch.get_num_threads()}"
    )
    print(
        f"{figures['connections']:,} connections: peak {figures['peak_gib']:.2f} GiB above the start "
        f"(at half the density, {figures['half_connections']:,}: {figures['half_peak_gib']:.2f} GiB); "
        f"{figures['bytes_per_connection']:.1f} bytes per connection, {figures['fixed_gib']:.2f} GiB fixed "
        "(activations, code pages)"
    )
    live = figures["live_bytes_per_connection"]
    print(
        f"live after training: {sum(live.values()):.1f} bytes per connection ("
        + ", ".join(f"{part} {size:.1f}" for part, size in live.items())
        + ")"
    )
    if args.json is not None:
        command = "python -m synapses_study.bench.memory " + " ".join(argv if argv is not None else sys.argv[1:])
        data = {
            "command": command.replace(f" --json {args.json}", "").strip(),
            "threads": torch.get_num_threads(),
            "spec": asdict(spec),
            **figures,
        }
        write_atomic(args.json, (json.dumps(data, indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
