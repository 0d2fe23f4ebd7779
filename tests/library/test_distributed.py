"""Data-parallel SET (issue 36, section 1): 2 gloo processes on this machine train a
sparsified MLP under DistributedDataParallel with evolutions and must equal one process on
the concatenated batch; a rank that draws differently is stopped by the hash check; a killed
run resumes from its checkpoint.

Each rank sees its slice of every global batch; DDP averages the values' gradients, which is
the gradient of the mean loss over the whole batch, so the two runs are one computation
summed in another order: losses agree to float rounding and every evolution, which decides
by ranks of values (pruning) and of summed gradients (gradient regrowth), to the bit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import synapses
from synapses.distributed import connections_hash

ROOT = Path(__file__).parents[2]
WORLD = 2
GLOBAL_BATCH = 64
SAMPLES = 512
EPOCHS = 4
RULES = {"uniform": synapses.Uniform, "gradient": synapses.Gradient}
EVERY = 4  # optimizer steps between evolutions: 2 per epoch, 8 in all


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """``(512, 32)`` inputs and their labels from a random linear teacher of 4 classes."""
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(SAMPLES, 32, generator=generator)
    y = (x @ torch.randn(32, 4, generator=generator)).argmax(1)
    return x, y


def _model() -> nn.Module:
    torch.manual_seed(0)  # the same initial model on every rank, as DDP requires
    model = synapses.sparsify(
        nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4)), epsilon=4
    )
    for layer in model.modules():
        if isinstance(layer, synapses.SETLayer):
            layer.compute = "sparse"  # torch's CSR kernels: no build, and the sparse path itself
    return model


def _train(rank: int, world: int, init: str, config: dict[str, Any]) -> dict[str, Any]:
    """Train ``EPOCHS`` epochs on this rank's slices; return per-epoch step losses (the mean
    over the global batch) and connections, and the Evolution's seed.

    ``config``: ``regrowth``; ``seed`` (Evolution's, ``None``: rank 0's broadcast);
    ``tamper`` (rank 1 reseeds its evolution generator); ``checkpoint`` and ``kill_after``
    (save after that epoch, then every rank kills itself); ``resume`` (start from the checkpoint).
    """
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    x, y = _data()
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    when = {"per_pass": 0.2} if config.get("per_pass") else {"every": EVERY}  # per_pass: a coin per layer and pass
    evolution = synapses.Evolution(model, optimizer, **when, regrowth=RULES[config["regrowth"]](), seed=config["seed"])
    start = 0
    if config.get("resume"):
        saved = torch.load(config["resume"])
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        evolution.load_state_dict(saved["evolution"])
        start = saved["epoch"]
    net = DistributedDataParallel(model, forward_sync_buffers=False) if world > 1 else model
    torch.manual_seed(100 + rank)  # per-rank seeds after wrapping, as data augmentation sets them
    if config.get("tamper") and rank == 1:
        assert evolution.generator is not None
        evolution.generator.manual_seed(12345)  # this rank now draws other pairs than rank 0
    local = GLOBAL_BATCH // world
    result: dict[str, Any] = {"seed": evolution.seed, "losses": {}, "connections": {}}
    for epoch in range(start, EPOCHS):
        order = torch.randperm(SAMPLES, generator=torch.Generator().manual_seed(epoch))
        losses = []
        for first in range(0, SAMPLES, GLOBAL_BATCH):
            rows = order[first : first + GLOBAL_BATCH][rank * local : (rank + 1) * local]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(net(x[rows]), y[rows])
            loss.backward()
            optimizer.step()
            evolution.step()
            mean = loss.detach().clone()
            if world > 1:
                dist.all_reduce(mean)
            losses.append(float(mean) / world)
        result["losses"][epoch] = losses
        result["connections"][epoch] = [
            m.connections.clone() for m in model.modules() if isinstance(m, synapses.SETLayer)
        ]
        if config.get("kill_after") == epoch + 1:
            if rank == 0:
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
                state |= {"evolution": evolution.state_dict(), "epoch": epoch + 1}
                torch.save(state, config["checkpoint"])
            dist.barrier()
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, as a killed job gets none
    if world > 1:
        dist.destroy_process_group()
    return result


def _rank(rank: int, world: int, init: str, config: dict[str, Any], out: str) -> None:
    """A spawned rank: its result, or the error it raised, to ``out``/rank{rank}.pt."""
    try:
        result: dict[str, Any] = _train(rank, world, init, config)
    except RuntimeError as error:
        result = {"error": str(error)}
        dist.destroy_process_group()
    torch.save(result, Path(out) / f"rank{rank}.pt")


def _spawn(tmp_path: Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_rank, args=(WORLD, init, config, str(tmp_path)), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]


def _assert_equal_runs(ddp: dict[str, Any], single: dict[str, Any], epochs: range) -> None:
    for epoch in epochs:
        torch.testing.assert_close(
            torch.tensor(ddp["losses"][epoch], dtype=torch.float64),
            torch.tensor(single["losses"][epoch], dtype=torch.float64),
            rtol=1e-6,
            atol=0,
            msg=lambda m, epoch=epoch: f"epoch {epoch}: {m}",
        )
        for a, b in zip(ddp["connections"][epoch], single["connections"][epoch], strict=True):
            assert torch.equal(a, b), f"connections differ at epoch {epoch}"


@pytest.mark.parametrize(("regrowth", "per_pass"), [("uniform", False), ("gradient", False), ("uniform", True)])
def test_two_gloo_ranks_equal_one_process_on_the_concatenated_batch(tmp_path, regrowth, per_pass):
    # no seed given and per-rank torch seeds: rank 0's evolution seed, broadcast, decides
    ranks = _spawn(tmp_path, {"regrowth": regrowth, "seed": None, "per_pass": per_pass})
    assert ranks[0]["seed"] == ranks[1]["seed"]
    for epoch in range(EPOCHS):  # both ranks hold one topology
        assert all(torch.equal(a, b) for a, b in zip(ranks[0]["connections"][epoch], ranks[1]["connections"][epoch]))
    single = _train(0, 1, "", {"regrowth": regrowth, "seed": ranks[0]["seed"], "per_pass": per_pass})
    _assert_equal_runs(ranks[0], single, range(EPOCHS))
    # the topology moved: the comparison is not between two static networks
    assert not torch.equal(single["connections"][0][0], single["connections"][EPOCHS - 1][0])


def test_a_rank_whose_evolution_draws_differently_is_stopped_at_the_first_evolution(tmp_path):
    ranks = _spawn(tmp_path, {"regrowth": "uniform", "seed": 3, "tamper": True})
    for result in ranks:
        message = result["error"]
        assert "\n" not in message
        assert message.startswith("Evolution: SETLayer '0' holds different connections on rank 0 vs rank 1 after ")
        assert "evolution 1 (step 4)" in message and "init_process_group" in message


def test_a_killed_ddp_run_resumes_from_its_checkpoint_as_if_never_stopped(tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    config = {"regrowth": "gradient", "seed": 11, "kill_after": 2, "checkpoint": str(checkpoint)}
    (tmp_path / "killed").mkdir()
    with pytest.raises(mp.ProcessExitedException, match="SIGKILL"):
        _spawn(tmp_path / "killed", config)
    assert checkpoint.exists()
    (tmp_path / "resumed").mkdir()
    resumed = _spawn(tmp_path / "resumed", {"regrowth": "gradient", "seed": 11, "resume": str(checkpoint)})
    assert sorted(resumed[0]["losses"]) == [2, 3]
    uninterrupted = _train(0, 1, "", {"regrowth": "gradient", "seed": 11})
    _assert_equal_runs(resumed[0], uninterrupted, range(2, EPOCHS))


def test_the_connection_hash_sees_slot_order_and_every_pair():
    connections = torch.tensor([[0, 1], [2, 3], [4, 5]])
    assert connections_hash(connections) == connections_hash(connections.clone())
    assert connections_hash(connections) != connections_hash(connections[[1, 0, 2]])
    moved = connections.clone()
    moved[2, 0] = 6
    assert connections_hash(connections) != connections_hash(moved)


def test_distributed_true_without_a_process_group_is_refused_in_one_line():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(
        ValueError, match=r"^Evolution\(distributed=True\) needs torch.distributed's .*init_process_group"
    ):
        synapses.Evolution(model, optimizer, every=1, distributed=True)


def test_a_seeded_evolution_repeats_whatever_torch_seed_follows(tmp_path):
    runs = []
    for torch_seed in (1, 2):
        model = _model()
        evolution = synapses.Evolution(model, torch.optim.SGD(model.parameters(), lr=0.1), every=1, seed=5)
        torch.manual_seed(torch_seed)
        evolution.evolve()
        runs.append([m.connections.clone() for m in model.modules() if isinstance(m, synapses.SETLayer)])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_torchrun_runs_the_example(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(ROOT / "examples" / "ddp.py")]
    out = subprocess.run(
        [*command, "--epochs", "1", "--samples", "2048"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 processes" in out.stdout and "epoch 1" in out.stdout
