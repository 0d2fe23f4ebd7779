"""synapses.Evolution: SET (and RigL) on a schedule, from the user's training loop."""

import copy
import math
import pickle
import subprocess
import sys

import pytest
import torch
from torch import nn

import synapses
from synapses import Evolution, SETLayer, UnknownOptimizerStateError, sparsify
from synapses.pairs import largest_gradient_pairs
from synapses.regrowth import Gradient

F64 = torch.float64


def _model(regrowth=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 15), nn.ReLU(), nn.Linear(15, 3)).double()
    return sparsify(model, epsilon=3, regrowth=regrowth, verbose=False)


def _train_step(model, optimizer, seed=0):
    torch.manual_seed(seed)
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(torch.randn(16, 30, dtype=F64)), torch.randint(0, 3, (16,))).backward()
    optimizer.step()


def _keys(layer):
    return set((layer.connections[:, 1] * layer.in_features + layer.connections[:, 0]).tolist())


def test_evolves_every_k_steps_and_resets_moved_momentum():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    evolution = Evolution(model, optimizer, every=3)
    before = _keys(model[0])
    evolved = []
    for step in range(7):
        _train_step(model, optimizer, step)
        evolved.append(evolution.step())
    assert evolved == [False, False, True, False, False, True, False] and evolution.evolutions == 2
    assert _keys(model[0]) != before and len(_keys(model[0])) == model[0].n_params
    # moved weights get a fresh momentum buffer (0); the others keep theirs
    _train_step(model, optimizer, 7)
    layer = model[0]
    before_connections = layer.connections.clone()
    before_buffer = optimizer.state[layer.weight]["momentum_buffer"].clone()
    evolution.evolve()
    buffer = optimizer.state[layer.weight]["momentum_buffer"]
    moved = (layer.connections != before_connections).any(
        dim=1
    )  # (a weight regrown onto its own pair is missed, not miscounted)
    assert moved.sum() >= 0.9 * 2 * int(layer.zeta * layer.n_params / 2)
    assert (buffer[moved] == 0).all() and torch.equal(
        buffer[~moved & (before_buffer != 0)], before_buffer[~moved & (before_buffer != 0)]
    )


def test_constant_and_cosine_zeta():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cosine = Evolution(model, optimizer, every=1, zeta=0.4, schedule="cosine", total_steps=10)
    factors = []
    for _ in range(10):
        factors.append(cosine.zeta_factor())
        cosine.steps += 1
    assert (
        factors[0] == 1.0
        and factors[5] == pytest.approx(0.5)
        and factors[-1] == pytest.approx((1 + math.cos(math.pi * 0.9)) / 2)
    )


def test_cosine_stops_at_total_steps_and_state_round_trips():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    evolution = Evolution(model, optimizer, every=2, schedule="cosine", total_steps=4)
    done = [evolution.step() for _ in range(8)]
    assert done == [False, True, False, False, False, False, False, False]
    again = Evolution(model, optimizer, every=2, schedule="cosine", total_steps=4)
    again.load_state_dict(evolution.state_dict())
    assert again.state_dict() == {"steps": 8, "evolutions": 1}


def test_zeta_zero_moves_nothing():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = _keys(model[0])
    Evolution(model, optimizer, every=1, zeta=0.0).evolve()
    assert _keys(model[0]) == before


@pytest.mark.parametrize(
    "build, match",
    [
        (
            lambda m: Evolution(nn.Linear(3, 3), torch.optim.SGD(nn.Linear(3, 3).parameters(), lr=1), every=1),
            "has no SETLayer",
        ),
        (
            lambda m: Evolution(m, torch.optim.SGD(m[4].parameters(), lr=1), every=1),
            "does not update the weight of SETLayer '0'",
        ),
        (
            lambda m: Evolution(m, torch.optim.SGD(m.parameters(), lr=1), every=0),
            "every must be a positive whole number",
        ),
        (
            lambda m: Evolution(m, torch.optim.SGD(m.parameters(), lr=1), every=1, schedule="cosine"),
            "needs total_steps",
        ),
        (lambda m: Evolution(m, "sgd", every=1), "must be a torch.optim.Optimizer"),
    ],
)
def test_misuse_is_one_clear_error(build, match):
    with pytest.raises(ValueError, match=match):
        build(_model())


def test_unknown_optimizer_is_refused_at_construction():
    model = _model()
    with pytest.raises(UnknownOptimizerStateError, match="LBFGS"):
        Evolution(model, torch.optim.LBFGS(model.parameters()), every=1)


# ---------------------------------------------------------------------------- gradient regrowth
@pytest.mark.parametrize("given", ["to the layer", "to Evolution"])
def test_gradient_regrowth_takes_the_largest_dense_gradients_among_free_pairs(given):
    torch.manual_seed(3)
    layer = SETLayer(40, 30, epsilon=3, regrowth=Gradient() if given == "to the layer" else None, dtype=F64)
    if given == "to Evolution":  # a layer built uniform watches its batches from here on
        evolution = Evolution(nn.Sequential(layer), None, every=1, regrowth=Gradient(), reset_optimizer_state=False)
    x = torch.randn(16, 40, dtype=F64)
    layer(x).pow(2).sum().backward()
    # dense reference: the gradient of the same loss with respect to every pair's weight
    dense = layer.to_dense().detach().requires_grad_()
    (x @ dense.T + layer.bias).pow(2).sum().backward()
    layer.zero_connections()
    kept = _keys(layer) - set((layer.connections[layer.pruned, 1] * 40 + layer.connections[layer.pruned, 0]).tolist())
    scores = dense.grad.abs().flatten().clone()
    scores[list(kept)] = -1
    expected = set(torch.topk(scores, int(layer.pruned.sum())).indices.tolist())
    if given == "to Evolution":
        evolution.regrow()
    else:
        layer.evolve_connections()
    assert _keys(layer) == kept | expected


def test_a_copied_or_pickled_gradient_layer_records_its_own_batches():
    layer = SETLayer(20, 10, epsilon=2, regrowth=Gradient(), dtype=F64)
    for copy_of in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        with pytest.raises(RuntimeError, match="needs the last training batch's gradients"):
            copy_of.evolve_connections()  # nothing recorded yet, whatever the original saw
        copy_of(torch.randn(4, 20, dtype=F64)).sum().backward()
        moved = copy_of.evolve_connections()
        assert len(_keys(copy_of)) == copy_of.n_params and len(moved) > 0


def test_a_forward_pass_without_backward_or_in_eval_keeps_the_last_training_batch():
    layer = SETLayer(20, 10, epsilon=2, regrowth=Gradient(), dtype=F64)
    x = torch.randn(4, 20, dtype=F64)
    layer(x).sum().backward()
    recorded = layer.regrowth_rule._batches[layer]
    layer(torch.randn(4, 20, dtype=F64))  # no backward
    layer.eval()
    layer(torch.randn(4, 20, dtype=F64)).sum().backward()
    assert layer.regrowth_rule._batches[layer] is recorded and torch.equal(recorded[0], x)


def test_gradient_chunks_give_the_same_pairs():
    torch.manual_seed(0)
    x, g = torch.randn(8, 50, dtype=F64), torch.randn(8, 70, dtype=F64)
    taken = torch.randperm(50 * 70)[:300]
    whole = largest_gradient_pairs(taken, 40, x, g, chunk_elements=10**9)
    for chunk in (1, 50, 333):
        assert torch.equal(largest_gradient_pairs(taken, 40, x, g, chunk_elements=chunk), whole)


def test_gradient_regrowth_without_a_backward_pass_is_refused():
    layer = SETLayer(10, 10, epsilon=2, regrowth=Gradient())
    with pytest.raises(RuntimeError, match="needs the last training batch's gradients"):
        layer.evolve_connections()


def test_evolution_with_gradient_regrowth_trains():
    model = _model(Gradient())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    evolution = Evolution(model, optimizer, every=2, regrowth=Gradient(), init=False)
    for step in range(6):
        _train_step(model, optimizer, step)
        evolution.step()
    assert evolution.evolutions == 3 and len(_keys(model[0])) == model[0].n_params


@pytest.mark.slow
def test_gradient_regrowth_of_a_20000_square_layer_stays_truly_sparse():
    # Peak memory of a whole evolution step, measured in a fresh process: a dense
    # 20,000 x 20,000 float32 gradient alone would take 1.6 GB.
    script = """
import resource, torch
from synapses import Gradient, SETLayer
torch.manual_seed(0)
layer = SETLayer(20_000, 20_000, epsilon=20, regrowth=Gradient())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
layer(torch.randn(128, 20_000)).sum().backward()
layer.zero_connections()
layer.evolve_connections()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"peak resident memory: {after / 1024:.0f} MiB in all, {(after - before) / 1024:.0f} MiB above the layer itself")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    above = float(out.strip().splitlines()[-1].split(", ")[1].split()[0])
    assert above < 600


def _trained_pair():
    import copy

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        synapses.SETLayer(20, 16, epsilon=2, generator=torch.Generator().manual_seed(1)),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 3),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 20)).sum().backward()
    optimizer.step()
    twin = copy.deepcopy(model)
    twin[0].generator = torch.Generator().manual_seed(2)  # (seed 1 again would replay the initial draws)
    model[0].generator = torch.Generator().manual_seed(2)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    twin_optimizer.load_state_dict(optimizer.state_dict())
    return (model, optimizer), (twin, twin_optimizer)


def test_prune_then_regrow_is_one_evolution_with_the_pruned_network_in_between():
    (model, optimizer), (twin, twin_optimizer) = _trained_pair()
    whole = synapses.Evolution(model, optimizer, every=1).evolve()
    halves = synapses.Evolution(twin, twin_optimizer, every=1)
    halves.prune()
    layer = twin[0]
    assert bool(layer.pruned.any()) and bool((layer.weight[layer.pruned] == 0).all())  # zeroed in place, not moved yet
    pruned_connections = layer.connections[layer.pruned].clone()
    moved = halves.regrow()
    assert (
        torch.equal(moved[0], whole[0])
        and torch.equal(twin[0].connections, model[0].connections)
        and torch.equal(twin[0].weight, model[0].weight)
    )
    assert not torch.equal(layer.connections[moved[0]], pruned_connections) and halves.evolutions == 1


def test_without_optimizer_state_reset_moved_weights_keep_their_momentum():
    (model, optimizer), _ = _trained_pair()
    before = optimizer.state[model[0].weight]["momentum_buffer"].clone()
    moved = synapses.Evolution(model, optimizer, every=1, reset_optimizer_state=False).evolve()[0]
    after = optimizer.state[model[0].weight]["momentum_buffer"]
    assert moved.numel() and torch.equal(after, before)


def test_per_pass_evolution_flips_a_coin_per_layer_and_training_pass():
    torch.manual_seed(0)
    model = nn.Sequential(
        SETLayer(20, 16, epsilon=2, generator=torch.Generator().manual_seed(3)),
        nn.ReLU(),
        SETLayer(16, 8, epsilon=2, generator=torch.Generator().manual_seed(4)),
    )
    evolution = Evolution(model, None, per_pass=1.0, reset_optimizer_state=False)
    before = [m.connections.clone() for m in (model[0], model[2])]
    model.eval()
    model(torch.randn(4, 20))
    assert evolution.evolutions == 0 and all(
        torch.equal(m.connections, c) for m, c in zip((model[0], model[2]), before)
    )
    model.train()
    model(torch.randn(4, 20))
    assert evolution.evolutions == 2 and not any(
        torch.equal(m.connections, c) for m, c in zip((model[0], model[2]), before)
    )
    evolution.per_pass = 0.0
    model(torch.randn(4, 20))
    assert evolution.evolutions == 2
    with pytest.raises(ValueError, match="give one of every= .*per_pass= .*cadence="):
        Evolution(model, None, every=1, per_pass=0.5, reset_optimizer_state=False)
    with pytest.raises(ValueError, match="optimizer must be a torch.optim.Optimizer, got NoneType"):
        Evolution(model, None, per_pass=0.5)  # resetting state needs an optimizer


def test_a_seeded_evolution_checkpoints_its_generator_and_resumes_its_draws():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    evolution = Evolution(model, optimizer, every=1, seed=4)
    state = copy.deepcopy(evolution.state_dict())
    assert set(state) == {"steps", "evolutions", "generator"} and evolution.seed == 4
    twin = copy.deepcopy(model)
    evolution.evolve()
    resumed = Evolution(twin, torch.optim.SGD(twin.parameters(), lr=0.1), every=1, seed=99)
    resumed.load_state_dict(state)  # the saved generator, not seed 99's, draws next
    resumed.evolve()
    assert torch.equal(model[0].connections, twin[0].connections)
    with pytest.raises(ValueError, match=r"expects \{'steps', 'evolutions', 'generator'\} .*got \['evolutions', 'step"):
        resumed.load_state_dict({"steps": 1, "evolutions": 1})
    with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, 2\*\*63\), got -1$"):
        Evolution(model, optimizer, every=1, seed=-1)
