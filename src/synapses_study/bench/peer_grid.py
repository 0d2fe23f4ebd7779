"""The default path against every peer, at every point of the performance grid.

    python -m synapses_study.bench.peer_grid [--repeats N] [--json FILE] [--quick]
    python -m synapses_study.bench.peer_grid --write-docs docs/performance.md --from-json FILE

For each layer shape and batch, sparsity and thread count of :data:`GRID`, one SETLayer with
the default ``compute`` (``"auto"``), dense ``nn.Linear`` and each peer installed here
(SparseProp, SparseLab: :func:`synapses_study.bench.kernels.peer_layers`) hold the same weights and
are timed in the same interleaved rounds, forward and backward (input and weight gradients)
and forward alone (no autograd). Medians in milliseconds; the ratios (ours over each peer's)
are the numbers that travel between machines.

``--write-docs`` puts the tables rendered from a JSON file this command wrote between the
``<!-- peer-grid -->`` markers of a Markdown file, so that every number there comes from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from synapses import SETLayer

from ..runs.run_files import write_atomic
from .docs_blocks import fill_block, publish
from .kernels import interleaved_medians_of, peer_layers, timed_calls

# (in, out, batch): SparseProp's two benchmark shapes, the demo-sized 784 -> 1000 and a large
# square layer.
SHAPES: tuple[tuple[int, int, int], ...] = ((768, 3072, 2048), (512, 256, 128), (784, 1000, 128), (4096, 4096, 128))
SPARSITIES: tuple[float, ...] = (0.98, 0.95, 0.90)
THREADS: tuple[int, ...] = (1, 2)
MODES = ("forward+backward", "forward")
# ours over a peer's time, at most (issue 38, goal 1)
TARGETS = {"forward+backward": 0.8, "forward": 1.0}
BLOCK = "peer-grid"  # docs/performance.md's generated block


@dataclass
class GridPoint:
    """One point: medians in ms by module name (``"ours"``, ``"dense"``, each peer)."""

    n_in: int
    n_out: int
    batch: int
    sparsity: float
    threads: int
    mode: str
    path: str  # the kernels ours took
    ms: dict[str, float] = field(default_factory=dict)
    calls: int = 0  # timed calls per module (after warm-up)

    def ratio(self, peer: str) -> float:
        """Ours over ``peer``'s time (below 1: ours is faster)."""
        return self.ms["ours"] / self.ms[peer]


def _layers(n_in: int, n_out: int, sparsity: float) -> dict[str, nn.Module]:
    """Ours (default compute), dense and the installed peers, on one set of weights."""
    torch.manual_seed(0)
    ours = SETLayer(n_in, n_out, sparsity=sparsity)
    dense = nn.Linear(n_in, n_out)
    with torch.no_grad():
        dense.weight.copy_(ours.to_dense())
        assert ours.bias is not None
        dense.bias.copy_(ours.bias)
    return {"ours": ours, "dense": dense, **peer_layers(dense)}


def _step(module: nn.Module, x: torch.Tensor, mode: str) -> Callable[[], None]:
    if mode == "forward":

        def forward() -> None:
            with torch.no_grad():
                module(x)

        return forward

    def forward_backward() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).sum().backward()

    return forward_backward


def measure_point(n_in: int, n_out: int, batch: int, sparsity: float, threads: int, repeats: int) -> list[GridPoint]:
    """Both modes of one point, every module timed in the same rounds, at ``threads``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        layers = _layers(n_in, n_out, sparsity)
        x = torch.randn(batch, n_in, requires_grad=True)
        ours = layers["ours"]
        assert isinstance(ours, SETLayer)
        # dense at the two largest shapes takes a tenth to a third of a second a step: a
        # fifth of the calls there (each point's count is recorded and shown)
        rounds = repeats if n_in * n_out * batch < 1 << 28 else max(5, repeats // 5)
        points = []
        for mode in MODES:
            medians = interleaved_medians_of([_step(m, x, mode) for m in layers.values()], rounds, torch.device("cpu"))
            points.append(
                GridPoint(
                    n_in,
                    n_out,
                    batch,
                    sparsity,
                    threads,
                    mode,
                    ours.kernel_for(batch),
                    dict(zip(layers, medians)),
                    timed_calls(rounds),
                )
            )
        return points
    finally:
        torch.set_num_threads(previous)


def run_grid(
    shapes: Sequence[tuple[int, int, int]] = SHAPES,
    sparsities: Sequence[float] = SPARSITIES,
    threads: Sequence[int] = THREADS,
    repeats: int = 100,
    progress: Callable[[str], None] | None = None,
) -> list[GridPoint]:
    """Every point of the grid (see the module's docstring)."""
    points = []
    for n_in, n_out, batch in shapes:
        for sparsity in sparsities:
            for count in threads:
                if progress is not None:
                    progress(f"{n_in} -> {n_out}, batch {batch}, {100 * sparsity:.0f}% sparse, {count} thread(s)")
                points += measure_point(n_in, n_out, batch, sparsity, count, repeats)
    return points


def environment() -> dict[str, Any]:
    """What the numbers were measured with."""
    found: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _processor_model(),
        "cores": _cores(),
    }
    for name in ("sparseprop", "sparselab"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _processor_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def to_json(points: Sequence[GridPoint], command: str) -> dict[str, Any]:
    return {"command": command, "environment": environment(), "points": [asdict(p) for p in points]}


def from_json(data: dict[str, Any]) -> list[GridPoint]:
    """The points of a file :func:`to_json` wrote; refuses one that is not such a file."""
    try:
        return [GridPoint(**p) for p in data["points"]]
    except (KeyError, TypeError) as error:
        raise ValueError(f"not a peer-grid result file ({error})") from None


def render(data: dict[str, Any]) -> str:
    """Markdown tables of the grid: per mode, one row per (shape, sparsity), ours against
    each peer at each thread count (ms and ours / peer), and which kernels ours took."""
    points = from_json(data)
    if "command" not in data or "environment" not in data:
        raise ValueError("not a peer-grid result file (no command or environment)")
    peers = [p for p in ("SparseProp", "SparseLab") if any(p in point.ms for point in points)]
    env = data["environment"]
    lines = [
        f"Measured by `{data['command']}`: torch {env['torch']}, {env['processor']}, {env['cores']} cores; "
        + ", ".join(f"{name} {env.get(name.lower()) or 'not installed'}" for name in ("SparseProp", "SparseLab"))
        + ". Milliseconds (medians); ratio = ours / peer (below 1: ours is faster); "
        + "target: at most "
        + " and ".join(f"{v:g} ({k})" for k, v in TARGETS.items())
        + ".",
        "",
    ]
    for mode in MODES:
        header = ["shape, batch", "sparsity", "threads", "calls", "ours (kernels)", "dense", *peers]
        header += [f"ours / {peer}" for peer in peers]
        lines += [f"**{mode}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for point in points:
            if point.mode != mode:
                continue
            cells = [
                f"{point.n_in} -> {point.n_out}, {point.batch}",
                f"{100 * point.sparsity:.0f}%",
                str(point.threads),
                str(point.calls) if point.calls else "–",
            ]
            cells += [f"{point.ms['ours']:.3g} ({point.path})", f"{point.ms['dense']:.3g}"]
            cells += [f"{point.ms[peer]:.3g}" if peer in point.ms else "" for peer in peers]
            cells += [_ratio_cell(point, peer, TARGETS[mode]) for peer in peers]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    compared = [(p, peer) for p in points for peer in peers if peer in p.ms]
    over = [(p, peer) for p, peer in compared if p.ratio(peer) > TARGETS[p.mode]]
    lines.append(f"Ratios over the target (bold): {len(over)} of {len(compared)}.")
    return "\n".join(lines)


def _ratio_cell(point: GridPoint, peer: str, target: float) -> str:
    if peer not in point.ms:
        return ""
    ratio = point.ratio(peer)
    return f"**{ratio:.2f}**" if ratio > target else f"{ratio:.2f}"


def write_docs(markdown_file: Path, data: dict[str, Any]) -> None:
    """Fill the peer-grid block of ``markdown_file`` with :func:`render` of ``data``."""
    fill_block(markdown_file, BLOCK, render(data))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m synapses_study.bench.peer_grid", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=100, help="timed calls per module and point (default 100)")
    parser.add_argument("--json", type=Path, default=None, help="write the measurements to this JSON file")
    parser.add_argument("--quick", action="store_true", help="one small shape, few repeats (a smoke test, not numbers)")
    parser.add_argument("--write-docs", type=Path, default=None, help="fill this Markdown file's peer-grid block")
    parser.add_argument(
        "--from-json", type=Path, default=None, help="render this measurement file instead of measuring"
    )
    args = parser.parse_args(argv)
    if args.from_json is not None:
        try:
            data = json.loads(args.from_json.read_text())
            render(data)
        except (OSError, ValueError) as error:
            print(f"peer_grid: cannot read {args.from_json}: {error}", file=sys.stderr)
            return 2
    else:
        command = "python -m synapses_study.bench.peer_grid" + (
            " --quick" if args.quick else f" --repeats {args.repeats}"
        )
        shapes = ((512, 256, 128),) if args.quick else SHAPES
        points = run_grid(
            shapes,
            repeats=5 if args.quick else args.repeats,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
        data = to_json(points, command)
        if args.json is not None:
            write_atomic(args.json, (json.dumps(data, indent=1) + "\n").encode())
    try:
        publish(render(data), args.write_docs, BLOCK)
    except (OSError, ValueError) as error:
        print(f"peer_grid: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
