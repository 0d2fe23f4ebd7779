"""Where the compiled kernels stop beating dense: the measurement behind ``compute="auto"``.

    python -m synapses_study.auto_rule [--repeats N] [--threads 1 2]

For small layers (at most ``synapses.sparse_ops.DENSE_MAX_ELEMENTS`` weights) the default
path chooses between dense ``F.linear`` and the compiled kernels by density alone, with a
threshold per thread count (:data:`synapses.dispatch.AUTO_DENSE_MIN_DENSITY`). This times
both paths' forward and backward, interleaved in one process, on a few layer shapes at a
range of densities and prints, per shape and thread count, the compiled kernels' time over
dense's at each density and the lowest density from which dense is faster.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from synapses import SETLayer

from .bench import interleaved_medians_of

SHAPES: tuple[tuple[int, int, int], ...] = ((784, 512, 128), (512, 128, 128), (512, 256, 128), (784, 1000, 128))
DENSITIES: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)


@dataclass(frozen=True)
class Crossing:
    """Native over dense time at each density for one shape and thread count."""

    n_in: int
    n_out: int
    batch: int
    threads: int
    ratios: tuple[tuple[float, float], ...]  # (density, native ms / dense ms)

    @property
    def dense_from(self) -> float | None:
        """The lowest measured density from which dense is faster at every higher one."""
        found = None
        for density, ratio in reversed(self.ratios):
            if ratio <= 1:
                break
            found = density
        return found


def measure(
    shapes: Sequence[tuple[int, int, int]] = SHAPES,
    densities: Sequence[float] = DENSITIES,
    threads: Sequence[int] = (1, 2),
    repeats: int = 50,
) -> list[Crossing]:
    """Forward and backward of the dense and the compiled path on the same layer."""
    previous = torch.get_num_threads()
    found = []
    try:
        for count in threads:
            torch.set_num_threads(count)
            for n_in, n_out, batch in shapes:
                ratios = []
                for density in densities:
                    torch.manual_seed(0)
                    paths = [SETLayer(n_in, n_out, sparsity=1 - density, compute=c) for c in ("native", "dense")]
                    paths[1].load_state_dict(paths[0].state_dict())
                    x = torch.randn(batch, n_in, requires_grad=True)

                    def step(layer: SETLayer, x: torch.Tensor = x) -> None:
                        layer.zero_grad(set_to_none=True)
                        x.grad = None
                        layer(x).sum().backward()

                    native_ms, dense_ms = interleaved_medians_of(
                        [lambda layer=layer: step(layer) for layer in paths], repeats, torch.device("cpu")
                    )
                    ratios.append((density, native_ms / dense_ms))
                found.append(Crossing(n_in, n_out, batch, count, tuple(ratios)))
    finally:
        torch.set_num_threads(previous)
    return found


def table(crossings: Sequence[Crossing]) -> str:
    densities = [d for d, _ in crossings[0].ratios]
    lines = [
        "native ms / dense ms, forward + backward (below 1: the compiled kernels are faster)",
        "| shape, batch | threads | " + " | ".join(f"{d:g}" for d in densities) + " | dense from |",
        "|---|---|" + "---|" * (len(densities) + 1),
    ]
    for c in crossings:
        cells = [f"{r:.2f}" for _, r in c.ratios]
        start = "never" if c.dense_from is None else f"{c.dense_from:g}"
        lines.append(f"| {c.n_in} -> {c.n_out}, {c.batch} | {c.threads} | " + " | ".join(cells) + f" | {start} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synapses_study.auto_rule", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed steps per path and density (default 50)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    args = parser.parse_args(argv)
    if any(t < 1 for t in args.threads):
        print(f"auto_rule: --threads must be positive, got {args.threads}", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}")
    print(table(measure(threads=args.threads, repeats=args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
