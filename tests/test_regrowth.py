"""'Near parents' regrowth: children next to strong surviving connections."""
import pytest
import torch

from synapses import SETLayer
from synapses.evolution import sample_near_parents


def _is_neighbour(a: torch.Tensor, b: torch.Tensor, width: int = 28) -> torch.Tensor:
    """Whether pixels a and b (flat indices) touch in a width x width image (8-neighbourhood)."""
    dr, dc = (a // width - b // width).abs(), (a % width - b % width).abs()
    return (dr <= 1) & (dc <= 1) & ((dr + dc) > 0)


def test_near_parents_evolution_keeps_the_invariants_and_places_children_next_to_survivors():
    torch.manual_seed(0)
    layer = SETLayer(784, 64, epsilon=1, regrowth="near_parents", parent_fraction=0.5, input_grid=(28, 28))
    assert "regrowth=near_parents" in repr(layer)
    layer.zero_connections()
    kept = layer.connections[~layer.pruned].clone()
    moved = layer.evolve_connections()
    new = layer.connections[moved]
    keys = layer.connections[:, 1] * 784 + layer.connections[:, 0]
    assert keys.unique().numel() == layer.n_params
    # a child shares its output with a surviving parent whose input pixel touches its own
    has_parent = torch.tensor([
        bool((_is_neighbour(kept[:, 0], pair[0]) & (kept[:, 1] == pair[1])).any()) for pair in new
    ])
    share = has_parent.float().mean().item()
    # half were placed next to parents; the uniform half rarely lands next to one by chance
    assert share >= 0.5
    uniform = SETLayer(784, 64, epsilon=1)
    uniform.load_state_dict(layer.state_dict())
    uniform.zero_connections()
    kept_u = uniform.connections[~uniform.pruned].clone()
    new_u = uniform.connections[uniform.evolve_connections()]
    share_u = torch.tensor([bool((_is_neighbour(kept_u[:, 0], p[0]) & (kept_u[:, 1] == p[1])).any()) for p in new_u]).float().mean().item()
    assert share_u < share - 0.2


def test_sample_near_parents_prefers_strong_parents():
    # two parents on a 1-d input line: one strong, one almost zero
    parent_keys = torch.tensor([0 * 100 + 10, 1 * 100 + 80])
    weights = torch.tensor([1.0, 1e-6])
    children = sample_near_parents(parent_keys, weights, 50, 100, parent_keys, generator=torch.Generator().manual_seed(0))
    outputs, inputs = children // 100, children % 100
    assert set(inputs.tolist()) <= {9, 11} and set(outputs.tolist()) == {0}
    assert children.unique().numel() == children.numel()  # duplicates dropped


def test_sample_near_parents_stays_in_the_image():
    # a parent in the corner pixel: children only at the 3 neighbours inside the image
    keys = torch.tensor([0])
    children = sample_near_parents(keys, torch.ones(1), 200, 784, keys, input_grid=(28, 28), generator=torch.Generator().manual_seed(1))
    assert set(children.tolist()) == {1, 28, 29}


@pytest.mark.parametrize("kwargs, message", [
    ({"regrowth": "nearest"}, "regrowth must be one of"),
    ({"parent_fraction": 1.5}, r"parent_fraction must be in \[0, 1\]"),
    ({"input_grid": (10, 10)}, "input_grid"),
])
def test_bad_regrowth_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SETLayer(784, 16, **kwargs)
