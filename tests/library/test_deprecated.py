"""The spellings kept from synapses 0.0.13 and its first successors still work, evolve
exactly as their replacements do, and warn once per process each; and the cadence objects
of Evolution."""

import warnings

import pytest
import torch
from torch import nn

import synapses
from synapses import ByHand, EverySteps, Evolution, Gradient, NearParents, PerPass, SETLayer, SparseNet
from synapses.deprecation import forget_warnings


@pytest.fixture
def fresh_warnings():
    forget_warnings()
    yield
    forget_warnings()


def _caught(build):
    """What ``build()`` returns, and the FutureWarnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = build()
    return result, [w for w in caught if issubclass(w.category, FutureWarning)]


def _evolved_twice(layer: SETLayer) -> torch.Tensor:
    layer.evolve_connections()
    layer.evolve_connections()
    return layer.connections.clone()


@pytest.mark.parametrize(
    "old, new",
    [
        (dict(regrowth="uniform"), dict(regrowth=synapses.Uniform())),
        (dict(regrowth="near_parents", parent_fraction=0.3), dict(regrowth=NearParents(0.3))),
        (
            dict(regrowth="near_parents", parent_fraction=0.3, input_grid=(28, 28)),
            dict(regrowth=NearParents(0.3, input_grid=(28, 28))),
        ),
        (dict(regrowth=NearParents(0.7), input_grid=(28, 28)), dict(regrowth=NearParents(0.7, input_grid=(28, 28)))),
    ],
)
def test_an_old_spelling_evolves_exactly_as_its_replacement_and_warns(fresh_warnings, old, new):
    def build(kwargs):
        return SETLayer(784, 64, epsilon=2, generator=torch.Generator().manual_seed(0), **kwargs)

    old_layer, caught = _caught(lambda: build(old))
    new_layer, none = _caught(lambda: build(new))
    deprecated = sum(1 for key, value in old.items() if key != "regrowth" or isinstance(value, str))
    assert len(caught) == deprecated and not none
    assert all(" is deprecated and will be removed; use " in str(w.message) for w in caught)
    assert torch.equal(_evolved_twice(old_layer), _evolved_twice(new_layer))


def test_each_spelling_warns_once_per_process(fresh_warnings):
    _, first = _caught(lambda: [SETLayer(20, 10, epsilon=2, regrowth="gradient") for _ in range(3)])
    _, again = _caught(lambda: SETLayer(20, 10, epsilon=2, regrowth="gradient"))
    assert len(first) == 1 and not again
    assert "regrowth='gradient' is deprecated" in str(first[0].message) and "synapses.Gradient()" in str(
        first[0].message
    )


def test_the_layer_s_string_attribute_and_optimizer_still_work_and_warn(fresh_warnings):
    layer = SETLayer(20, 10, epsilon=2, regrowth=Gradient())
    name, caught = _caught(lambda: layer.regrowth)
    assert name == "gradient" and "layer.regrowth_rule" in str(caught[0].message)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    _, caught = _caught(lambda: setattr(layer, "optimizer", optimizer))
    assert layer.optimizer is optimizer and "layer.optimizer = ... is deprecated" in str(caught[0].message)
    layer(torch.randn(4, 20)).sum().backward()
    optimizer.step()
    moved = layer.evolve_connections()  # the assigned optimizer's momentum of moved weights is reset
    assert moved.numel() and not optimizer.state[layer.weight]["momentum_buffer"][moved].any()


def test_sparse_net_s_old_spellings_reach_its_first_layer_as_the_rule_does(fresh_warnings):
    def net(**kwargs):
        return SparseNet((784, 40, 30, 10), epsilon=2, generator=torch.Generator().manual_seed(0), **kwargs)

    (old, caught) = _caught(lambda: net(input_regrowth="near_parents", parent_fraction=0.2, input_grid=(28, 28)))
    new, none = _caught(lambda: net(input_regrowth=NearParents(0.2, input_grid=(28, 28))))
    assert len(caught) == 3 and not none
    assert {w.filename for w in caught} == {__file__}  # each points at the user's line, not into the library
    assert any("SparseNet(input_grid=...)" in str(w.message) for w in caught)
    old.zero_connections(), new.zero_connections()
    old.evolve_connections(), new.evolve_connections()
    assert all(torch.equal(a.connections, b.connections) for a, b in zip(old.set_layers, new.set_layers))


def _model():
    torch.manual_seed(0)
    return synapses.sparsify(nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3)), epsilon=2, verbose=False)


def _steps(evolution, optimizer, model, n):
    evolved = []
    for _ in range(n):
        optimizer.zero_grad()
        model(torch.randn(4, 12)).sum().backward()
        optimizer.step()
        evolved.append(evolution.step())
    return evolved


def test_a_cadence_object_is_the_shorthand_it_names():
    runs = []
    for kwargs in (dict(every=3), dict(cadence=EverySteps(3))):
        model = _model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        evolution = Evolution(model, optimizer, seed=1, **kwargs)
        assert evolution.cadence == EverySteps(3) and "cadence=EverySteps(steps=3)" in repr(evolution)
        runs.append((_steps(evolution, optimizer, model, 7), model[0].connections.clone()))
    assert runs[0][0] == [False, False, True, False, False, True, False]
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    model = _model()
    assert Evolution(model, torch.optim.SGD(model.parameters(), lr=0.1), cadence=PerPass(0.5)).per_pass == 0.5


def test_by_hand_never_evolves_on_its_own_and_its_halves_do():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    evolution = Evolution(model, optimizer, cadence=ByHand())
    before = model[0].connections.clone()
    assert _steps(evolution, optimizer, model, 5) == [False] * 5 and torch.equal(model[0].connections, before)
    evolution.prune()
    assert model[0].pruned.any() and evolution.evolutions == 0
    evolution.regrow()
    assert evolution.evolutions == 1 and not torch.equal(model[0].connections, before)
    assert evolution.cadence == ByHand() and evolution.steps == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "give one of every=.*per_pass=.*cadence="),
        (dict(every=2, cadence=ByHand()), "give one of every="),
        (dict(cadence="by hand"), "cadence must be synapses.EverySteps"),
        (dict(cadence=EverySteps), "cadence must be synapses.EverySteps"),
    ],
)
def test_a_cadence_is_given_once_and_as_an_object(kwargs, message):
    model = _model()
    with pytest.raises(ValueError, match=message):
        Evolution(model, torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: EverySteps(0), r"EverySteps\(steps\) must be a positive whole number"),
        (lambda: EverySteps(2.5), r"EverySteps\(steps\) must be a positive whole number"),
        (lambda: PerPass(1.5), r"PerPass\(probability\) must be a number in \[0, 1\], got 1.5"),
        (lambda: PerPass(True), r"PerPass\(probability\) must be a number"),
    ],
)
def test_a_bad_cadence_is_refused_where_it_is_made(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_a_whole_layer_pickled_before_the_properties_evolves_after_loading():
    """Pickles of whole models (torch.save(model)) made before ``optimizer`` and
    ``regrowth`` became properties hold them as plain attributes."""
    layer = SETLayer(20, 10, epsilon=2, generator=torch.Generator().manual_seed(0))
    state = dict(layer.__dict__)
    state["optimizer"] = state.pop("_optimizer")
    state["regrowth"] = "uniform"
    old = SETLayer.__new__(SETLayer)
    old.__setstate__(state)
    assert old.optimizer is None and old.regrowth_rule.name == "uniform"
    assert old.evolve_connections().numel() > 0


def test_warnings_as_errors_raise_at_every_use_not_the_first_only(fresh_warnings):
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            with pytest.raises(FutureWarning, match="regrowth='uniform' is deprecated"):
                SETLayer(20, 10, epsilon=2, regrowth="uniform")
