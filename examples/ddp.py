"""Data-parallel SET: the MNIST SET-MLP on several processes with torch's own launcher.

    torchrun --nproc_per_node 2 examples/ddp.py                   # one machine, 2 processes
    torchrun --nproc_per_node 2 examples/ddp.py --epochs 1 --samples 2048   # seconds
    python examples/ddp.py --scaling                               # time 1 and 2 processes here

Several machines: the same command on each, with torchrun's rendezvous (docs/library.md).
What is synapses-specific: ``sparsify`` before wrapping, ``Evolution`` built after
``init_process_group`` (it takes rank 0's seed, so every rank draws the same new
connections, and checks after each evolution that the ranks agree), and
``forward_sync_buffers=False`` (the connections are buffers that need no sending at each step).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from your_model import load_mnist  # this folder's single-process example: MNIST from its idx files

import synapses

DATA = Path(__file__).resolve().parents[1] / "data" / "mnist"


def train(rank: int, world: int, args: argparse.Namespace) -> float:
    """Train on this rank's slice of every global batch; returns seconds per epoch (the last)."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world)  # torchrun's environment
    device = torch.device("cuda", rank % torch.cuda.device_count()) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    data = load_mnist(args.data)
    x, y = data.train_x[: args.samples].to(device), data.train_y[: args.samples].to(device)

    torch.manual_seed(0)  # the same initial model on every rank
    model = nn.Sequential(nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10))
    model = synapses.sparsify(model, epsilon=20, verbose=False).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    steps_per_epoch = len(x) // args.batch
    evolution = synapses.Evolution(model, optimizer, every=steps_per_epoch)  # SET: once per epoch
    net = DistributedDataParallel(model, forward_sync_buffers=False) if world > 1 else model

    local = args.batch // world  # each rank's share of a global batch of args.batch
    seconds = 0.0
    for epoch in range(args.epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch)).to(device)  # alike on all
        start = time.perf_counter()
        total = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            rows = order[step * args.batch : (step + 1) * args.batch][rank * local : (rank + 1) * local]
            optimizer.zero_grad()
            loss = F.cross_entropy(net(x[rows]), y[rows])
            loss.backward()
            optimizer.step()
            evolution.step()  # prune and regrow when due; raises if the ranks' connections differ
            total += loss.detach()
        if world > 1:
            dist.all_reduce(total)
        seconds = time.perf_counter() - start
        if rank == 0 and not args.quiet:
            mean = float(total) / world / steps_per_epoch
            print(f"epoch {epoch + 1}: loss {mean:.4f}, {seconds:.2f} s ({world} processes)", flush=True)
    if world > 1:
        dist.destroy_process_group()
    return seconds


def _timed_rank(rank: int, world: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(args.port))
    torch.set_num_threads(args.threads)
    seconds = train(rank, world, args)
    if rank == 0:
        Path(out).write_text(f"{seconds}\n")


def scaling(args: argparse.Namespace) -> None:
    """Seconds per epoch at the same global batch on 1 and 2 processes (the last of
    ``--epochs`` epochs, so that start-up is not counted), each process on ``--threads`` threads."""
    args.quiet = True
    out = Path(f"/tmp/synapses-ddp-scaling-{os.getpid()}")
    times = {}
    for world in (1, 2):
        mp.spawn(_timed_rank, args=(world, args, str(out)), nprocs=world, join=True)
        times[world] = float(out.read_text())
    out.unlink()
    print(
        f"{args.samples} samples, global batch {args.batch}, 784-1000-1000-10 epsilon 20, {args.threads} thread(s) "
        f"per process, {os.cpu_count()} cores"
    )
    for world, seconds in times.items():
        print(
            f"{world} process{'es' if world > 1 else ''}: {seconds:.2f} s per epoch, "
            f"{args.samples / seconds:,.0f} samples/s"
        )
    print(f"speed-up 1 -> 2 processes: {times[1] / times[2]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=60000, help="training images used")
    parser.add_argument("--batch", type=int, default=128, help="global batch, split over the processes")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--scaling", action="store_true", help="time 1 and 2 processes on this machine")
    parser.add_argument("--threads", type=int, default=1, help="threads per process (--scaling)")
    parser.add_argument("--port", type=int, default=29517, help="rendezvous port (--scaling)")
    args = parser.parse_args()
    args.quiet = False
    if args.scaling:
        scaling(args)
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun sets WORLD_SIZE and RANK
    train(int(os.environ.get("RANK", "0")), world, args)


if __name__ == "__main__":
    main()
