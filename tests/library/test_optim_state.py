"""Optimizer state of moved weights: reset to a fresh parameter's, everything else untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import synapses
from synapses import SETLayer, SparseNet, UnknownOptimizerStateError, register_reset_rule, reset_state
from synapses.optim_state import RESET_RULES

F64 = torch.float64


def _lr(group):
    return group["lr"]


# (id, factory, {state key: fresh value as a function of the param group})
OPTIMIZERS = [
    ("SGD-momentum", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), {"momentum_buffer": 0.0}),
    ("Adam", lambda p: torch.optim.Adam(p, lr=0.01), {"exp_avg": 0.0, "exp_avg_sq": 0.0}),
    (
        "Adam-amsgrad",
        lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True),
        {"exp_avg": 0.0, "exp_avg_sq": 0.0, "max_exp_avg_sq": 0.0},
    ),
    ("AdamW", lambda p: torch.optim.AdamW(p, lr=0.01), {"exp_avg": 0.0, "exp_avg_sq": 0.0}),
    (
        "AdamW-amsgrad",
        lambda p: torch.optim.AdamW(p, lr=0.01, amsgrad=True),
        {"exp_avg": 0.0, "exp_avg_sq": 0.0, "max_exp_avg_sq": 0.0},
    ),
    ("NAdam", lambda p: torch.optim.NAdam(p, lr=0.01), {"exp_avg": 0.0, "exp_avg_sq": 0.0}),
    ("RAdam", lambda p: torch.optim.RAdam(p, lr=0.01), {"exp_avg": 0.0, "exp_avg_sq": 0.0}),
    ("Adamax", lambda p: torch.optim.Adamax(p, lr=0.01), {"exp_avg": 0.0, "exp_inf": 0.0}),
    (
        "RMSprop-centered-momentum",
        lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.9, centered=True),
        {"square_avg": 0.0, "momentum_buffer": 0.0, "grad_avg": 0.0},
    ),
    ("RMSprop", lambda p: torch.optim.RMSprop(p, lr=0.01), {"square_avg": 0.0}),
    (
        "Adagrad-init-accumulator",
        lambda p: torch.optim.Adagrad(p, lr=0.05, initial_accumulator_value=0.1),
        {"sum": 0.1},
    ),
    ("Adadelta", lambda p: torch.optim.Adadelta(p), {"square_avg": 0.0, "acc_delta": 0.0}),
    ("Rprop", lambda p: torch.optim.Rprop(p, lr=0.003), {"prev": 0.0, "step_size": 0.003}),
    ("ASGD", lambda p: torch.optim.ASGD(p, lr=0.01), {"ax": 0.0}),
]


def _model(seed=0):
    torch.manual_seed(seed)
    layer = SETLayer(24, 16, epsilon=3, dtype=F64)
    head = nn.Linear(16, 3, dtype=F64)
    return layer, head


def _train(layer, head, opt, steps=3):
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        opt.zero_grad()
        x = torch.randn(8, 24, dtype=F64, generator=gen)
        head(torch.tanh(layer(x))).pow(2).mean().backward()
        opt.step()


def _snapshot(opt):
    return {p: copy.deepcopy(state) for p, state in opt.state.items()}


def _assert_same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _assert_equal_state(a, b):
    _assert_same(a, b, "state")


@pytest.mark.parametrize("via", ["argument", "attribute"])
@pytest.mark.parametrize("name, factory, fresh", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_reset_moved_entries_only(name, factory, fresh, via):
    layer, head = _model()
    opt = factory([*layer.parameters(), *head.parameters()])
    _train(layer, head, opt)
    before = _snapshot(opt)
    state_w = before[layer.weight]
    per_element = {k for k, v in state_w.items() if isinstance(v, torch.Tensor) and v.shape == layer.weight.shape}
    assert per_element == set(fresh), f"{name} keeps {sorted(per_element)}"

    if via == "attribute":
        layer.optimizer = opt
        moved = layer.evolve_connections()
    else:
        moved = layer.evolve_connections(optimizer=opt)
    assert moved.numel() > 0
    stay = torch.ones(layer.n_params, dtype=torch.bool)
    stay[moved] = False

    after_w = opt.state[layer.weight]
    assert after_w.keys() == state_w.keys()
    for key, value in state_w.items():
        new = after_w[key]
        if key in fresh:
            expected = torch.full((moved.numel(),), fresh[key], dtype=value.dtype)
            assert not torch.equal(value[moved], expected), f"{key} was already fresh: the test proves nothing"
            assert torch.equal(new[moved], expected), key
            assert torch.equal(new[stay], value[stay]), key
            assert new.dtype == value.dtype and new.shape == value.shape
        elif isinstance(value, torch.Tensor):
            assert torch.equal(new, value), key  # step, eta, mu, mu_product, ...
        else:
            assert new == value, key
    # every other parameter's state, bias included, is untouched
    for param in (layer.bias, head.weight, head.bias):
        _assert_equal_state(opt.state[param], before[param])


@pytest.mark.parametrize("name, factory, fresh", OPTIMIZERS[:3], ids=[o[0] for o in OPTIMIZERS[:3]])
def test_training_continues_after_reset(name, factory, fresh):
    layer, head = _model()
    opt = factory([*layer.parameters(), *head.parameters()])
    _train(layer, head, opt)
    layer.evolve_connections(optimizer=opt)
    _train(layer, head, opt)  # state shapes still fit the optimizer's update
    assert torch.isfinite(layer.weight).all()


def test_every_builtin_rule_is_listed():
    # the rules name exactly the per-element keys the torch optimizers create
    for name, factory, fresh in OPTIMIZERS:
        rules = RESET_RULES[type(factory([nn.Parameter(torch.zeros(1))]))]
        assert set(fresh) <= set(rules), name


def test_sparse_net_evolve_resets_each_layer():
    torch.manual_seed(0)
    net = SparseNet((20, 16, 12, 3), epsilon=2)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        net(torch.randn(4, 20)).sum().backward()
        opt.step()
    net.zero_connections()
    marks = [layer.pruned.nonzero().squeeze(1) for layer in net.set_layers]
    readout = _snapshot(opt)
    net.evolve_connections(optimizer=opt)
    for layer, moved in zip(net.set_layers, marks):
        assert torch.all(opt.state[layer.weight]["exp_avg"][moved] == 0)
        assert torch.all(opt.state[layer.weight]["exp_avg_sq"][moved] == 0)
    for param in net.readout.parameters():
        _assert_equal_state(opt.state[param], readout[param])


# ---------------------------------------------------------------------------- edge cases


def test_no_state_yet():
    layer, head = _model()
    opt = torch.optim.Adam(layer.parameters())
    moved = layer.evolve_connections(optimizer=opt)
    assert moved.numel() > 0
    assert len(opt.state) == 0


def test_an_optimizer_without_the_weight_is_refused_before_anything_moves():
    # it could reset nothing: passing it is a mistake (the wrong optimizer), said at once
    layer, head = _model()
    opt = torch.optim.Adam(head.parameters(), lr=0.01)
    _train(layer, head, opt)
    before = _snapshot(opt)
    connections = layer.connections.clone()
    with pytest.raises(ValueError, match="the Adam given to evolve_connections does not hold this layer's weight"):
        layer.evolve_connections(optimizer=opt)
    assert torch.equal(layer.connections, connections) and layer.weight not in opt.state
    for param in head.parameters():
        _assert_equal_state(opt.state[param], before[param])


def test_both_the_argument_and_the_attached_optimizer_are_reset():
    layer, head = _model()
    attached = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
    given = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
    for opt in (attached, given):
        layer.weight.grad = torch.ones_like(layer.weight)
        opt.step()
    layer.optimizer = attached
    moved = layer.evolve_connections(optimizer=given)
    kept = torch.ones(layer.n_params, dtype=torch.bool)
    kept[moved] = False
    for opt in (given, attached):  # a stale buffer in either would push the new connection
        assert torch.all(opt.state[layer.weight]["momentum_buffer"][moved] == 0)
        assert torch.all(opt.state[layer.weight]["momentum_buffer"][kept] == 1)


def test_reset_state_direct():
    p = nn.Parameter(torch.zeros(6))
    opt = torch.optim.Adagrad([p], lr=0.1, initial_accumulator_value=0.5)
    p.grad = torch.arange(6.0)
    opt.step()
    before = opt.state[p]["sum"].clone()
    reset_state(opt, p, torch.tensor([1, 4]))
    expected = before.clone()
    expected[[1, 4]] = 0.5
    assert torch.equal(opt.state[p]["sum"], expected)


def test_subclass_of_known_optimizer_uses_parent_rules():
    class MyAdam(torch.optim.Adam):
        pass

    layer, head = _model()
    opt = MyAdam(layer.parameters(), lr=0.01)
    _train(layer, head, opt)
    moved = layer.evolve_connections(optimizer=opt)
    assert torch.all(opt.state[layer.weight]["exp_avg"][moved] == 0)


class FooOptimizer(torch.optim.Optimizer):
    """Keeps a per-element running sum of gradients under a key no rule knows."""

    def __init__(self, params, lr=0.01):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "foo" not in state:
                    state["foo"] = torch.zeros_like(p)
                    state["count"] = 0
                state["foo"].add_(p.grad)
                state["count"] += 1
                p.add_(state["foo"], alpha=-group["lr"])


def test_unknown_optimizer_raises():
    layer, head = _model()
    opt = FooOptimizer(layer.parameters())
    _train(layer, head, opt)
    foo = opt.state[layer.weight]["foo"].clone()
    with pytest.raises(UnknownOptimizerStateError, match=r"FooOptimizer state 'foo'.*register_reset_rule"):
        layer.evolve_connections(optimizer=opt)
    assert torch.equal(opt.state[layer.weight]["foo"], foo)  # not partially reset
    assert issubclass(UnknownOptimizerStateError, RuntimeError)
    assert synapses.UnknownOptimizerStateError is UnknownOptimizerStateError


def test_unknown_key_of_known_optimizer_raises():
    layer, head = _model()
    opt = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
    _train(layer, head, opt)
    opt.state[layer.weight]["extra"] = torch.ones_like(layer.weight)
    with pytest.raises(UnknownOptimizerStateError, match="SGD state 'extra'"):
        layer.evolve_connections(optimizer=opt)


def test_register_reset_rule(monkeypatch):
    with monkeypatch.context() as patch:  # registration changes a module-level table: undo it here
        patch.setattr(synapses.optim_state, "RESET_RULES", dict(RESET_RULES))
        register_reset_rule(FooOptimizer, {"foo": lambda group: group["lr"] * 10})
        layer, head = _model()
        opt = FooOptimizer(layer.parameters(), lr=0.02)
        _train(layer, head, opt)
        before = opt.state[layer.weight]["foo"].clone()
        count = opt.state[layer.weight]["count"]
        moved = layer.evolve_connections(optimizer=opt)
        stay = torch.ones(layer.n_params, dtype=torch.bool)
        stay[moved] = False
        after = opt.state[layer.weight]["foo"]
        assert torch.all(after[moved] == 0.2)
        assert torch.equal(after[stay], before[stay])
        assert opt.state[layer.weight]["count"] == count
    # outside the context the optimizer is unknown again
    assert FooOptimizer not in synapses.optim_state.RESET_RULES
    with pytest.raises(UnknownOptimizerStateError, match="FooOptimizer"):
        layer.evolve_connections(optimizer=opt)


def _lbfgs_after_one_step(layer_first: bool):
    """An LBFGS optimizer over a layer and a head, after one step (state populated)."""
    layer, head = _model()
    params = [*layer.parameters(), *head.parameters()] if layer_first else [*head.parameters(), *layer.parameters()]
    opt = torch.optim.LBFGS(params, max_iter=3)
    x = torch.randn(8, 24, dtype=F64)

    def closure():
        opt.zero_grad()
        loss = head(torch.tanh(layer(x))).pow(2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    return layer, opt


def test_lbfgs_flattened_state_raises():
    # LBFGS keeps one flattened state for all its parameters, keyed on the first one
    layer, opt = _lbfgs_after_one_step(layer_first=True)
    before = copy.deepcopy(opt.state[layer.weight])
    connections = layer.connections.clone()
    with pytest.raises(UnknownOptimizerStateError, match="LBFGS state"):
        layer.evolve_connections(optimizer=opt)
    _assert_equal_state(opt.state[layer.weight], before)
    # the error comes before anything moves
    assert torch.equal(layer.connections, connections) and not layer.pruned.any()


def test_lbfgs_state_keyed_on_another_parameter_is_refused_too():
    layer, opt = _lbfgs_after_one_step(layer_first=False)
    assert layer.weight not in opt.state  # the flat history lives under the head's weight
    with pytest.raises(UnknownOptimizerStateError, match="LBFGS"):
        layer.evolve_connections(optimizer=opt)
