"""What :class:`~synapses.Evolution` does under ``torch.distributed`` (data parallel: the same
model on every rank, each rank a slice of the batch).

SET needs no topology traffic: with the same values on every rank (DDP averages their
gradients), magnitude pruning agrees, and regrowth drawn from a generator seeded alike on
every rank agrees. So only three small things cross ranks, all here:

* once, rank 0's evolution seed (:func:`broadcast_seed`);
* after each evolution, a 64-bit hash of each layer's connections (:func:`check_same_connections`),
  8 bytes per layer and rank, so that a rank that drew differently stops the run at once;
* for gradient regrowth, the dense weight gradient of the last batch, a block of outputs at
  a time (:func:`all_reduce_sum`), so that every rank chooses from the whole batch's scores.

Every function is a collective: all ranks call it, in the same order.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

# odd 64-bit constants (splitmix64's), written as signed int64
_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB


_syncing = False  # set by Evolution while it evolves a data-parallel model (see syncing())


def syncing() -> bool:
    """Whether an :class:`~synapses.Evolution` of a data-parallel model is evolving now: a
    rule that chooses from per-rank data (gradient regrowth) must then combine the ranks'."""
    return _syncing


class evolving_in_sync:
    """Context manager: :func:`syncing` is true inside (Evolution wraps its evolutions in it)."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.before = False

    def __enter__(self) -> None:
        global _syncing
        self.before, _syncing = _syncing, self.active or _syncing

    def __exit__(self, *exc: object) -> None:
        global _syncing
        _syncing = self.before


def world_size() -> int:
    """The number of ranks of the default process group, 1 outside ``torch.distributed``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _device() -> torch.device:
    """Where the default group's collectives take their tensors (NCCL: the current GPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_seed(seed: int) -> int:
    """Rank 0's ``seed`` on every rank (one int64 broadcast)."""
    value = torch.tensor([seed], dtype=torch.int64, device=_device())
    dist.broadcast(value, src=0)
    return int(value.item())


def connections_hash(connections: torch.Tensor) -> int:
    """A 64-bit hash of a layer's ``(n, 2)`` connections, slot order included.

    Each slot's ``(input, output)`` pair and position go through splitmix64's finaliser and
    the results are summed: int64 arithmetic wraps, and a wrapping sum does not depend on the
    order of the reduction, so every rank and device gets the same number for the same
    connections.
    """
    pairs = connections.to(torch.int64)
    slots = torch.arange(pairs.shape[0], dtype=torch.int64, device=pairs.device)
    x = (pairs[:, 0] * 0x100000001B3 + pairs[:, 1]) * _GOLDEN + slots
    # ">>" on int64 is arithmetic; masking keeps it the logical shift splitmix64 uses
    x = (x ^ ((x >> 30) & ((1 << 34) - 1))) * _MIX1
    x = (x ^ ((x >> 27) & ((1 << 37) - 1))) * _MIX2
    x = x ^ ((x >> 31) & ((1 << 33) - 1))
    return int(x.sum())


def check_same_connections(layers: dict[str, torch.Tensor], when: str) -> None:
    """Raise if any rank holds other connections than the rest.

    Args:
        layers: layer name -> its ``(n, 2)`` connections, in the same order on every rank.
        when: what just happened, for the message (``"evolution 3"``).

    Raises:
        RuntimeError: naming the first layer that differs and the ranks that hold each version.
    """
    mine = torch.tensor([connections_hash(c) for c in layers.values()], dtype=torch.int64, device=_device())
    gathered = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    table = torch.stack(gathered).cpu()  # (ranks, layers)
    for column, name in enumerate(layers):
        hashes = table[:, column].tolist()
        if len(set(hashes)) > 1:
            groups: dict[int, list[int]] = {}
            for rank, value in enumerate(hashes):
                groups.setdefault(value, []).append(rank)
            versions = " vs ".join(
                ("ranks " if len(ranks) > 1 else "rank ") + ",".join(map(str, ranks)) for ranks in groups.values()
            )
            raise RuntimeError(
                f"Evolution: SETLayer {name!r} holds different connections on {versions} after {when}; every rank "
                "must evolve alike: build Evolution after init_process_group on every rank, the same model on each, "
                "and draw nothing from evolution.generator yourself (ranks that train models of their own: "
                "Evolution(distributed=False))"
            )


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over ranks, in place (moved to the collectives' device and back)."""
    device = _device()
    if tensor.device == device:
        dist.all_reduce(tensor)
        return tensor
    moved = tensor.to(device)
    dist.all_reduce(moved)
    return tensor.copy_(moved)
