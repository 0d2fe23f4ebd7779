"""SET evolution: pruning, regrowth, uniformity of the new pairs, and the networks."""

from __future__ import annotations

import math

import pytest
import torch

from synapses import EvolNet, SETLayer, SparseNet
from synapses.pairs import prune_closest_to_zero, sample_free_pairs

F64 = torch.float64


def keys_of(layer: SETLayer) -> torch.Tensor:
    return layer.connections[:, 1] * layer.in_features + layer.connections[:, 0]


def assert_unique_pairs(layer: SETLayer) -> None:
    keys = keys_of(layer)
    assert torch.unique(keys).numel() == keys.numel()


def make_layer(in_features=60, out_features=40, *, seed=0, **kwargs) -> SETLayer:
    torch.manual_seed(seed)
    kwargs.setdefault("epsilon", 4)
    return SETLayer(in_features, out_features, dtype=F64, **kwargs)


# ---------------------------------------------------------------------------- pruning


@pytest.mark.parametrize("zeta", [0.0, 0.1, 0.3, 0.5, 1.0])
def test_zero_connections_per_sign(zeta):
    layer = make_layer(zeta=zeta)
    w = layer.weight.detach().clone()
    pos, neg = w >= 0, w < 0
    marked_idx = layer.zero_connections()
    mask = layer.pruned.clone()

    assert torch.equal(marked_idx, mask.nonzero().squeeze(1))
    assert int((mask & pos).sum()) == int(zeta * int(pos.sum()))
    assert int((mask & neg).sum()) == int(zeta * int(neg.sum()))
    # marked weights are the closest to zero of their sign
    if (mask & pos).any() and (~mask & pos).any():
        assert w[mask & pos].max() <= w[~mask & pos].min()
    if (mask & neg).any() and (~mask & neg).any():
        assert w[mask & neg].abs().max() <= w[~mask & neg].abs().min()
    # marked are zeroed, the rest untouched
    assert torch.all(layer.weight[mask] == 0)
    assert torch.equal(layer.weight[~mask], w[~mask])
    # the layer's mask is the functional one
    assert torch.equal(mask, prune_closest_to_zero(w, zeta))
    if zeta == 0:
        assert not mask.any() and marked_idx.numel() == 0


def test_prune_closest_to_zero_exact_values():
    w = torch.tensor([0.0, 3.0, -1.0, 0.0, 1.0, -3.0, 2.0, -2.0])
    # non-negative: 0, 3, 0, 1, 2 (5 -> 2 pruned: the two zeros); negative: -1, -3, -2 (3 -> 1: -1)
    mask = prune_closest_to_zero(w, 0.5)
    assert mask.tolist() == [True, False, True, True, False, False, False, False]


def test_prune_zeros_count_as_non_negative():
    # zeros counted as negative would give 4 // 2 = 2 negatives pruned instead of 1
    w = torch.tensor([0.0, 0.0, -1.0, -2.0, 5.0, 6.0])
    mask = prune_closest_to_zero(w, 0.5)
    # non-negative 0, 0, 5, 6 -> 2 pruned (the zeros); negative -1, -2 -> 1 pruned (-1)
    assert mask.tolist() == [True, True, True, False, False, False]
    # negative zero is >= 0 too: non-negative -0, 1, 2 -> 1 pruned; negative -1 -> none
    w = torch.tensor([-0.0, 1.0, 2.0, -1.0])
    assert prune_closest_to_zero(w, 0.5).tolist() == [True, False, False, False]


def test_prune_rounds_down():
    w = torch.tensor([1.0, 2.0, 3.0, -1.0, -2.0])
    assert prune_closest_to_zero(w, 0.34).tolist() == [True, False, False, False, False]
    assert prune_closest_to_zero(w, 0.5).tolist() == [True, False, False, True, False]
    assert not prune_closest_to_zero(w, 0.0).any()


# ---------------------------------------------------------------------------- evolve


@pytest.mark.parametrize("init", [True, False])
def test_evolve_connections_invariants(init):
    layer = make_layer()
    n = layer.n_params
    marked = layer.zero_connections()
    before_conn = layer.connections.clone()
    before_w = layer.weight.detach().clone()
    kept_keys = keys_of(layer)[~layer.pruned].clone()

    moved = layer.evolve_connections(init=init)

    assert layer.n_params == n and layer.weight.shape == (n,) and layer.connections.shape == (n, 2)
    assert torch.equal(torch.sort(moved).values, torch.sort(marked).values)
    stay = torch.ones(n, dtype=torch.bool)
    stay[moved] = False
    assert torch.equal(layer.connections[stay], before_conn[stay])
    assert torch.equal(layer.weight[stay], before_w[stay])
    assert_unique_pairs(layer)
    new_keys = keys_of(layer)[moved]
    assert not torch.isin(new_keys, kept_keys).any()
    assert layer.connections[:, 0].max() < layer.in_features and layer.connections[:, 1].max() < layer.out_features
    assert layer.connections.min() >= 0
    assert not layer.pruned.any()
    if init:
        assert torch.all(layer.weight[moved] != 0)
    else:
        assert torch.all(layer.weight[moved] == 0)


def test_regrown_weights_init_distribution():
    torch.manual_seed(0)
    layer = SETLayer(784, 512)
    moved = layer.evolve_connections()
    assert moved.numel() > 4000
    values = layer.weight.detach()[moved]
    assert abs(values.std().item() / math.sqrt(2 / 784) - 1) < 0.05
    assert abs(values.mean().item()) < 4 * math.sqrt(2 / 784) / math.sqrt(moved.numel())


def test_evolve_without_zero_marks_first():
    layer = make_layer()
    w = layer.weight.detach().clone()
    expected = prune_closest_to_zero(w, layer.zeta).nonzero().squeeze(1)
    assert not layer.pruned.any()
    moved = layer.evolve_connections()
    assert torch.equal(torch.sort(moved).values, expected)
    assert not layer.pruned.any()


def test_evolve_uses_existing_marks():
    layer = make_layer()
    with torch.no_grad():
        layer.pruned[[1, 5, 7]] = True
    before = layer.connections.clone()
    moved = layer.evolve_connections()
    assert sorted(moved.tolist()) == [1, 5, 7]
    stay = torch.ones(layer.n_params, dtype=torch.bool)
    stay[[1, 5, 7]] = False
    assert torch.equal(layer.connections[stay], before[stay])


def test_regrown_zero_weights_are_pruned_first():
    layer = make_layer()
    moved = layer.evolve_connections(init=False)
    weights = layer.weight.detach().clone()  # before zero_connections zeroes the marked ones
    non_negative = int((weights >= 0).sum())
    again = layer.zero_connections()
    marked_non_negative = again[weights[again] >= 0]
    # regrown weights are exact zeros, the first of the non-negative ones to go
    assert moved.numel() > int(layer.zeta * non_negative)
    assert marked_non_negative.numel() == int(layer.zeta * non_negative)
    assert torch.isin(marked_non_negative, moved).all() and (weights[marked_non_negative] == 0).all()


def test_evolve_zeta_zero_moves_nothing():
    layer = make_layer(zeta=0.0)
    before = layer.connections.clone()
    moved = layer.evolve_connections()
    assert moved.numel() == 0
    assert torch.equal(layer.connections, before)


def test_repeated_evolution_keeps_invariants():
    layer = make_layer(30, 20, epsilon=3)
    x = torch.randn(4, 30, dtype=F64)
    for _ in range(10):
        layer.evolve_connections()
        assert_unique_pairs(layer)
        torch.testing.assert_close(layer(x), x @ layer.to_dense().T + layer.bias, rtol=0, atol=1e-10)


def test_high_density_layer_evolves_without_duplicates():
    # 380 of 400 pairs taken: the free set is small, regrowth goes through the permutation path
    layer = make_layer(20, 20, sparsity=0.05)
    assert layer.n_params == 380
    for _ in range(10):
        moved = layer.evolve_connections()
        assert moved.numel() > 0
        assert_unique_pairs(layer)


def test_full_layer_evolves_in_place():
    # sparsity 0: no pair is free after pruning but the pruned ones, so they all come back
    layer = make_layer(8, 6, sparsity=0.0)
    for _ in range(3):
        layer.evolve_connections()
        assert sorted(keys_of(layer).tolist()) == list(range(48))


# ---------------------------------------------------------------------------- sampling


def _check_sample(taken, k, n_pairs, out):
    assert out.dtype == torch.int64 and out.shape == (k,)
    assert torch.unique(out).numel() == k
    assert out.min() >= 0 and out.max() < n_pairs
    assert not torch.isin(out, taken).any()


@pytest.mark.parametrize(
    "n_pairs, n_taken, k",
    [
        (10_000, 3_000, 500),  # rejection sampling (4k <= free)
        (10_000, 3_000, 1_750),  # rejection, at the boundary 4k == free
        (10_000, 3_000, 1_751),  # permutation path
        (10_000, 3_000, 7_000),  # every free pair
        (1_000, 0, 10),  # nothing taken
        (50, 49, 1),  # one free pair
    ],
)
def test_sample_free_pairs_invariants(n_pairs, n_taken, k):
    gen = torch.Generator().manual_seed(0)
    taken = torch.randperm(n_pairs, generator=gen)[:n_taken]
    out = sample_free_pairs(taken, k, n_pairs, generator=gen)
    _check_sample(taken, k, n_pairs, out)
    if k == n_pairs - n_taken:
        expected = torch.ones(n_pairs, dtype=torch.bool)
        expected[taken] = False
        assert torch.equal(torch.sort(out).values, expected.nonzero().squeeze(1))


def test_sample_free_pairs_zero_and_errors():
    taken = torch.tensor([0, 3, 5])
    out = sample_free_pairs(taken, 0, 10)
    assert out.shape == (0,) and out.dtype == torch.int64
    with pytest.raises(ValueError, match="cannot draw 8 new pairs: only 7 of 10 are free"):
        sample_free_pairs(taken, 8, 10)
    with pytest.raises(ValueError, match="only 0 of 3 are free"):
        sample_free_pairs(torch.arange(3), 1, 3)


def test_sample_free_pairs_deterministic_with_generator():
    taken = torch.arange(0, 1000, 3)
    a = sample_free_pairs(taken, 100, 1000, generator=torch.Generator().manual_seed(1))
    b = sample_free_pairs(taken, 100, 1000, generator=torch.Generator().manual_seed(1))
    c = sample_free_pairs(taken, 100, 1000, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def _uniformity(k, draws=1500):
    """Counts over the free keys of a 24-key space (8 taken) of ``draws`` samples of size k."""
    n_pairs = 24
    taken = torch.tensor([0, 1, 2, 5, 11, 12, 20, 23])
    free = torch.tensor([i for i in range(n_pairs) if i not in set(taken.tolist())])
    gen = torch.Generator().manual_seed(1234)
    counts = torch.zeros(n_pairs)
    first = torch.zeros(n_pairs)
    for _ in range(draws):
        out = sample_free_pairs(taken, k, n_pairs, generator=gen)
        counts[out] += 1
        first[out[0]] += 1
    assert counts[taken].sum() == 0
    return counts[free], first[free]


def _chi2(counts):
    expected = counts.sum() / counts.numel()
    return (((counts - expected) ** 2) / expected).sum().item()


@pytest.mark.parametrize("k", [2, 4, 9, 14], ids=["rejection_k2", "rejection_k4", "randperm_k9", "randperm_k14"])
def test_sample_free_pairs_uniform(k):
    counts, first = _uniformity(k)
    # 16 free keys: 15 degrees of freedom, P(chi2 > 50) ~ 1e-5. Sampling without replacement
    # has even less spread for large k, so these bounds are loose for a uniform sampler.
    assert _chi2(counts) < 50
    # no preference for the low or high keys (a sorted-order bias shows here first)
    low, high = counts[:8].sum().item(), counts[8:].sum().item()
    assert abs(low - high) / (low + high) < 0.06
    # the first key returned is itself uniform (the returned order is the drawing order)
    assert _chi2(first) < 50
    assert abs(first[:8].sum().item() - first[8:].sum().item()) / first.sum().item() < 0.12


def test_sample_free_pairs_first_key_not_sorted():
    # a sampler returning sorted keys would always start with the smallest one
    gen = torch.Generator().manual_seed(0)
    taken = torch.arange(0, 200, 2)
    firsts = {int(sample_free_pairs(taken, 20, 200, generator=gen)[0]) for _ in range(30)}
    assert len(firsts) > 10


def test_layer_regrowth_is_uniform_over_free_pairs():
    # one evolution step from the same pruned state, repeated: the new pairs cover every
    # pair not kept after pruning equally often, and never a kept one
    torch.manual_seed(3)
    layer = SETLayer(6, 5, sparsity=0.6, zeta=0.5, generator=torch.Generator().manual_seed(3))
    layer.zero_connections()
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    kept = keys_of(layer)[~layer.pruned]
    free = torch.ones(30, dtype=torch.bool)
    free[kept] = False
    counts = torch.zeros(30)
    for _ in range(400):
        layer.load_state_dict(state)
        moved = layer.evolve_connections()
        counts += torch.bincount(keys_of(layer)[moved], minlength=30)
    assert counts[~free].sum() == 0
    assert counts.sum() == 400 * int(state["pruned"].sum())
    assert _chi2(counts[free]) < 3 * int(free.sum())  # ~ degrees of freedom when uniform


# ---------------------------------------------------------------------------- networks

SMALL = (20, 16, 12, 3)


def test_sparse_net_zero_and_evolve_call_each_layer():
    torch.manual_seed(0)
    net = SparseNet(SMALL, epsilon=2)
    weights = [layer.weight.detach().clone() for layer in net.set_layers]
    net.zero_connections()
    for layer, w in zip(net.set_layers, weights):
        assert torch.equal(layer.pruned, prune_closest_to_zero(w, layer.zeta))
        assert layer.pruned.any()
    conns = [layer.connections.clone() for layer in net.set_layers]
    net.evolve_connections()
    for layer, c in zip(net.set_layers, conns):
        assert not layer.pruned.any()
        assert not torch.equal(layer.connections, c)
        assert_unique_pairs(layer)


def test_sparse_net_evolve_passes_init_and_optimizer():
    torch.manual_seed(0)
    net = SparseNet(SMALL, epsilon=2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(4, 20)).sum().backward()
    opt.step()
    net.zero_connections()
    marks = [layer.pruned.nonzero().squeeze(1) for layer in net.set_layers]
    net.evolve_connections(init=False, optimizer=opt)
    for layer, moved in zip(net.set_layers, marks):
        assert torch.all(layer.weight[moved] == 0)
        assert torch.all(opt.state[layer.weight]["momentum_buffer"][moved] == 0)


def test_sparse_net_shapes_and_errors():
    torch.manual_seed(0)
    net = SparseNet(SMALL, epsilon=2)
    out = net(torch.randn(5, 4, 5))  # flattened to 20
    assert out.shape == (5, 3)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(5))
    with pytest.raises(ValueError, match="sizes"):
        SparseNet((784, 10))


def test_evolnet_per_layer_probability():
    assert EvolNet(0.5).evolution_proba == 0.25
    assert EvolNet(0.05).evolution_proba == 0.025
    assert EvolNet(0.9, sizes=(20, 16, 14, 12, 3), epsilon=2).evolution_proba == pytest.approx(0.3)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="evolution_proba"):
            EvolNet(bad, sizes=SMALL, epsilon=2)


def _count_evolutions(net, monkeypatch):
    calls = {id(layer): 0 for layer in net.set_layers}
    for layer in net.set_layers:
        original = layer.evolve_connections

        def wrapped(*args, _original=original, _layer=layer, **kwargs):
            calls[id(_layer)] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(layer, "evolve_connections", wrapped)
    return calls


def test_evolnet_evolves_every_training_pass(monkeypatch):
    torch.manual_seed(0)
    net = EvolNet(1.0, sizes=SMALL, epsilon=2)
    net.evolution_proba = 1.0  # per layer: every pass, every layer
    calls = _count_evolutions(net, monkeypatch)
    x = torch.randn(4, 20)
    net.train()
    for step in range(1, 4):
        before = [layer.connections.clone() for layer in net.set_layers]
        net(x)
        for layer, c in zip(net.set_layers, before):
            assert not torch.equal(layer.connections, c)
            assert_unique_pairs(layer)
        assert list(calls.values()) == [step, step]


def test_evolnet_eval_mode_never_evolves(monkeypatch):
    torch.manual_seed(0)
    net = EvolNet(1.0, sizes=SMALL, epsilon=2)
    net.evolution_proba = 1.0
    calls = _count_evolutions(net, monkeypatch)
    net.eval()
    before = [layer.connections.clone() for layer in net.set_layers]
    x = torch.randn(4, 20)
    out = net(x)
    for layer, c in zip(net.set_layers, before):
        assert torch.equal(layer.connections, c)
    assert list(calls.values()) == [0, 0]
    # in eval mode an EvolNet computes what a SparseNet with the same state does
    plain = SparseNet(SMALL, epsilon=2)
    plain.load_state_dict(net.state_dict())
    torch.testing.assert_close(out, plain(x))


def test_evolnet_zero_probability_never_evolves(monkeypatch):
    torch.manual_seed(0)
    net = EvolNet(0.0, sizes=SMALL, epsilon=2)
    calls = _count_evolutions(net, monkeypatch)
    for _ in range(5):
        net(torch.randn(4, 20))
    assert list(calls.values()) == [0, 0]


def test_evolnet_rate_and_determinism(monkeypatch):
    def run(seed):
        torch.manual_seed(seed)
        net = EvolNet(0.6, sizes=SMALL, epsilon=2, generator=torch.Generator().manual_seed(seed))
        calls = _count_evolutions(net, monkeypatch)
        x = torch.randn(2, 20, generator=torch.Generator().manual_seed(0))
        for _ in range(80):
            net(x)
        return list(calls.values()), [layer.connections.clone() for layer in net.set_layers]

    calls_a, conns_a = run(7)
    calls_b, conns_b = run(7)
    assert calls_a == calls_b
    assert all(torch.equal(a, b) for a, b in zip(conns_a, conns_b))
    # 80 passes at 0.3 per layer: 24 expected, sd about 4.1
    for count in calls_a:
        assert 10 <= count <= 40


def test_evolnet_resets_given_optimizer(monkeypatch):
    torch.manual_seed(0)
    net = EvolNet(1.0, sizes=SMALL, epsilon=2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.optimizer = opt
    net.evolution_proba = 0.0
    net(torch.randn(4, 20)).sum().backward()
    opt.step()
    net.evolution_proba = 1.0
    moved = {}
    for layer in net.set_layers:
        original = layer.evolve_connections

        def wrapped(*args, _original=original, _layer=layer, **kwargs):
            moved[id(_layer)] = out = _original(*args, **kwargs)
            return out

        monkeypatch.setattr(layer, "evolve_connections", wrapped)
    with torch.no_grad():
        net(torch.randn(4, 20))
    for layer in net.set_layers:
        idx = moved[id(layer)]
        assert idx.numel() > 0
        assert torch.all(opt.state[layer.weight]["momentum_buffer"][idx] == 0)
