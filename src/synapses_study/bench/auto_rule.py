"""Where the compiled kernels stop beating dense: the measurement behind ``compute="auto"``.

    python -m synapses_study.bench.auto_rule [--repeats N] [--threads 1 2] [--json FILE]
    python -m synapses_study.bench.auto_rule --from-json FILE --write-docs docs/performance.md

For small layers (at most ``synapses.sparse_ops.DENSE_MAX_ELEMENTS`` weights) the default
path chooses between dense ``F.linear`` and the compiled kernels by density alone, with a
threshold per thread count (:data:`synapses.dispatch.AUTO_DENSE_MIN_DENSITY`). This times
both paths' forward and backward, interleaved in one process, on a few layer shapes at a
range of densities and prints, per shape and thread count, the compiled kernels' time over
dense's at each density and the lowest density from which dense is faster; with
``--write-docs``, into the ``auto-rule`` block of a Markdown file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from synapses import SETLayer

from ..runs.run_files import write_atomic
from .docs_blocks import publish
from .kernels import interleaved_medians_of

SHAPES: tuple[tuple[int, int, int], ...] = ((784, 512, 128), (512, 128, 128), (512, 256, 128), (784, 1000, 128))
DENSITIES: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
BLOCK = "auto-rule"  # docs/performance.md's generated block


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


def dense_from_over_shapes(crossings: Sequence[Crossing], threads: int) -> float | None:
    """The rule's threshold at ``threads``: :attr:`Crossing.dense_from` of the geometric mean
    of the ratios over every measured shape (one shape's noise does not move it alone)."""
    rows = [c for c in crossings if c.threads == threads]
    if not rows:
        raise ValueError(f"no measurement at {threads} thread(s)")
    densities = [d for d, _ in rows[0].ratios]
    means = [math.exp(sum(math.log(c.ratios[i][1]) for c in rows) / len(rows)) for i in range(len(densities))]
    return Crossing(0, 0, 0, threads, tuple(zip(densities, means))).dense_from


def _step(layer: SETLayer, x: torch.Tensor) -> None:
    layer.zero_grad(set_to_none=True)
    x.grad = None
    layer(x).sum().backward()


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

                    native_ms, dense_ms = interleaved_medians_of(
                        [partial(_step, layer, x) for layer in paths], repeats, torch.device("cpu")
                    )
                    ratios.append((density, native_ms / dense_ms))
                found.append(Crossing(n_in, n_out, batch, count, tuple(ratios)))
    finally:
        torch.set_num_threads(previous)
    return found


def to_json(crossings: Sequence[Crossing], command: str) -> dict[str, Any]:
    return {"command": command, "torch": torch.__version__, "crossings": [asdict(c) for c in crossings]}


def from_json(data: dict[str, Any]) -> list[Crossing]:
    """The crossings of a file :func:`to_json` wrote; refuses one that is not such a file."""
    try:
        return [
            Crossing(c["n_in"], c["n_out"], c["batch"], c["threads"], tuple(tuple(r) for r in c["ratios"]))
            for c in data["crossings"]
        ]
    except (KeyError, TypeError) as error:
        raise ValueError(f"not an auto_rule result file ({error})") from None


def table(crossings: Sequence[Crossing]) -> str:
    densities = [d for d, _ in crossings[0].ratios]
    lines = [
        "| shape, batch | threads | " + " | ".join(f"density {d:g}" for d in densities) + " | dense from |",
        "|---|---|" + "---|" * (len(densities) + 1),
    ]
    for c in crossings:
        cells = [f"{r:.2f}" for _, r in c.ratios]
        start = "never" if c.dense_from is None else f"{c.dense_from:g}"
        lines.append(f"| {c.n_in} -> {c.n_out}, {c.batch} | {c.threads} | " + " | ".join(cells) + f" | {start} |")
    for threads in sorted({c.threads for c in crossings}):
        threshold = dense_from_over_shapes(crossings, threads)
        start = "never" if threshold is None else f"**{threshold:g}**"
        lines.append(f"| every shape (geometric mean): the rule | {threads} | " + " |" * len(densities) + f" {start} |")
    return "\n".join(lines)


def render(data: dict[str, Any]) -> str:
    """The docs block: the table of :func:`table` with the command and torch that measured it."""
    crossings = from_json(data)
    if "command" not in data or "torch" not in data:
        raise ValueError("not an auto_rule result file (no command or torch version)")
    return (
        f"Measured by `{data['command']}` (torch {data['torch']}): the compiled kernels' forward and backward "
        "time over dense's (below 1: the compiled kernels are faster).\n\n" + table(crossings)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m synapses_study.bench.auto_rule", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=50, help="timed steps per path and density (default 50)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--json", type=Path, default=None, help="write the measurements to this JSON file")
    parser.add_argument("--from-json", type=Path, default=None, help="render this file instead of measuring")
    parser.add_argument("--write-docs", type=Path, default=None, help="fill this Markdown file's auto-rule block")
    args = parser.parse_args(argv)
    if any(t < 1 for t in args.threads):
        print(f"auto_rule: --threads must be positive, got {args.threads}", file=sys.stderr)
        return 2
    try:
        if args.from_json is not None:
            data = json.loads(args.from_json.read_text())
            render(data)
        else:
            crossings = measure(threads=args.threads, repeats=args.repeats)
            threads = " ".join(map(str, args.threads))
            data = to_json(
                crossings, f"python -m synapses_study.bench.auto_rule --repeats {args.repeats} --threads {threads}"
            )
            if args.json is not None:
                write_atomic(args.json, (json.dumps(data, indent=1) + "\n").encode())
        publish(render(data), args.write_docs, BLOCK)
    except (OSError, ValueError) as error:
        print(f"auto_rule: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
