"""'Near parents' regrowth: children next to strong surviving connections."""

import pytest
import torch

from synapses import NearParents, SETLayer
from synapses.pairs import sample_near_parents


def _is_neighbour(a: torch.Tensor, b: torch.Tensor, width: int = 28) -> torch.Tensor:
    """Whether pixels a and b (flat indices) touch in a width x width image (8-neighbourhood)."""
    dr, dc = (a // width - b // width).abs(), (a % width - b % width).abs()
    return (dr <= 1) & (dc <= 1) & ((dr + dc) > 0)


def test_near_parents_evolution_keeps_the_invariants_and_places_children_next_to_survivors():
    torch.manual_seed(0)
    layer = SETLayer(784, 64, epsilon=1, regrowth=NearParents(0.5, input_grid=(28, 28)))
    assert "regrowth=NearParents(fraction=0.5, input_grid=(28, 28))" in repr(layer)
    layer.zero_connections()
    kept = layer.connections[~layer.pruned].clone()
    moved = layer.evolve_connections()
    new = layer.connections[moved]
    keys = layer.connections[:, 1] * 784 + layer.connections[:, 0]
    assert keys.unique().numel() == layer.n_params
    # a child shares its output with a surviving parent whose input pixel touches its own
    has_parent = torch.tensor(
        [bool((_is_neighbour(kept[:, 0], pair[0]) & (kept[:, 1] == pair[1])).any()) for pair in new]
    )
    share = has_parent.float().mean().item()
    # half were placed next to parents; the uniform half rarely lands next to one by chance
    assert share >= 0.5
    uniform = SETLayer(784, 64, epsilon=1)
    uniform.load_state_dict(layer.state_dict())
    uniform.zero_connections()
    kept_u = uniform.connections[~uniform.pruned].clone()
    new_u = uniform.connections[uniform.evolve_connections()]
    share_u = (
        torch.tensor([bool((_is_neighbour(kept_u[:, 0], p[0]) & (kept_u[:, 1] == p[1])).any()) for p in new_u])
        .float()
        .mean()
        .item()
    )
    assert share_u < share - 0.2


def test_sample_near_parents_prefers_strong_parents():
    # two parents on a 1-d input line: one strong, one almost zero
    parent_keys = torch.tensor([0 * 100 + 10, 1 * 100 + 80])
    weights = torch.tensor([1.0, 1e-6])
    children = sample_near_parents(
        parent_keys, weights, 50, 100, parent_keys, generator=torch.Generator().manual_seed(0)
    )
    outputs, inputs = children // 100, children % 100
    assert set(inputs.tolist()) <= {9, 11} and set(outputs.tolist()) == {0}
    assert children.unique().numel() == children.numel()  # duplicates dropped


def test_sample_near_parents_stays_in_the_image():
    # a parent in the corner pixel: children only at the 3 neighbours inside the image
    keys = torch.tensor([0])
    children = sample_near_parents(
        keys, torch.ones(1), 200, 784, keys, input_grid=(28, 28), generator=torch.Generator().manual_seed(1)
    )
    assert set(children.tolist()) == {1, 28, 29}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"regrowth": "nearest"}, "regrowth must be a synapses.RegrowthRule"),
        ({"regrowth": NearParents(0.5, input_grid=(10, 10))}, r"has 100 pixels but a SETLayer has in_features=784"),
        ({"parent_fraction": 1.5}, r"parent_fraction must be in \[0, 1\]"),
        ({"input_grid": (10, 10)}, "input_grid"),
    ],
)
def test_bad_regrowth_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SETLayer(784, 16, **kwargs)


def _evolved(regrowth, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    layer = SETLayer(784, 64, epsilon=2, regrowth=regrowth, generator=generator)
    layer.evolve_connections()
    layer.evolve_connections()
    return layer.connections.clone()


def test_a_rule_s_settings_change_where_it_grows():
    from synapses import Uniform

    assert torch.equal(_evolved(None), _evolved(Uniform()))  # the default rule
    grid = (28, 28)
    assert not torch.equal(_evolved(NearParents(0.3, input_grid=grid)), _evolved(NearParents(0.9, input_grid=grid)))
    assert not torch.equal(_evolved(NearParents(0.9, input_grid=grid)), _evolved(NearParents(0.9)))


def _lowest_inputs_rule():
    """A new rule in one class: half of the moved weights to the free pairs of output 0 with
    the lowest inputs, the rest uniform."""
    from synapses import RegrowthRule

    class LowestInputsFirst(RegrowthRule):
        name = "lowest_inputs_first"

        def place(self, layer, kept_keys, kept_weights, n):
            candidates = torch.arange(layer.in_features)  # output 0: keys are the input indices
            free = candidates[~torch.isin(candidates, kept_keys)]
            return free[: n // 2]

    return LowestInputsFirst()


def test_a_new_rule_is_one_class_usable_by_the_layer_and_by_evolution():
    from synapses import Evolution

    rule = _lowest_inputs_rule()
    layer = SETLayer(784, 64, epsilon=2, regrowth=rule, generator=torch.Generator().manual_seed(0))
    assert "LowestInputsFirst()" in repr(layer)
    layer.zero_connections()
    kept = layer.connection_keys()[~layer.pruned].clone()
    moved = layer.evolve_connections()
    new_keys = layer.connection_keys()[moved]
    free_of_output_0 = torch.tensor([k for k in range(784) if k not in set(kept.tolist())])
    assert torch.equal(new_keys[: moved.numel() // 2], free_of_output_0[: moved.numel() // 2])  # placed by the rule
    assert layer.connection_keys().unique().numel() == layer.n_params  # the rest uniform, never a duplicate

    model = torch.nn.Sequential(SETLayer(784, 64, epsilon=2), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    evolution = Evolution(model, optimizer, every=1, regrowth=rule)
    model(torch.randn(8, 784)).sum().backward()
    optimizer.step()
    evolution.step()
    assert bool((model[0].connections[:, 1] == 0).sum() > 0)


def test_a_rule_that_places_a_taken_pair_is_refused_before_anything_moves():
    from synapses import RegrowthRule

    class Careless(RegrowthRule):
        def place(self, layer, kept_keys, kept_weights, n):
            return kept_keys[:1]

    layer = SETLayer(784, 64, epsilon=2, regrowth=Careless())
    before = layer.connections.clone()
    with pytest.raises(ValueError, match="Careless.place returned a pair that is already connected"):
        layer.evolve_connections()
    assert torch.equal(layer.connections, before)


def test_an_unknown_rule_name_is_refused_everywhere():
    import synapses

    for build in (
        lambda: SETLayer(10, 10, regrowth="nearest"),
        lambda: synapses.sparsify(
            torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.Linear(10, 2)), epsilon=2, regrowth="nearest"
        ),
    ):
        with pytest.raises(ValueError, match="regrowth must be a synapses.RegrowthRule .*, got 'nearest'"):
            build()
