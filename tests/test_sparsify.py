"""synapses.sparsify: any model's Linear layers become SETLayers."""
import pytest
import torch
from torch import nn

import synapses
from synapses import SETLayer, sparsify


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


class _CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(8 * 26 * 26, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.head(self.features(x))


def test_erdos_renyi_replaces_every_linear_but_the_output(capsys):
    model = sparsify(_mlp(), epsilon=20)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["SETLayer", "ReLU", "SETLayer", "ReLU", "Linear"]
    assert model[0].n_params == synapses.erdos_renyi_n_params(784, 300, 20, None)
    out = capsys.readouterr().out.splitlines()
    assert out == [f"0: Linear(784, 300) -> SETLayer with {model[0].n_params:,} connections (9.22%)", f"2: Linear(300, 100) -> SETLayer with {model[2].n_params:,} connections (26.67%)"]


def test_erk_meets_the_global_sparsity_and_favours_small_layers():
    model = sparsify(_mlp(), sparsity=0.9, distribution="erk", verbose=False)
    first, second = model[0], model[2]
    total = 784 * 300 + 300 * 100
    assert abs(first.n_params + second.n_params - 0.1 * total) <= 2  # int() rounding per layer
    assert second.density > first.density  # (in + out) / (in out) is larger for the smaller layer


def test_erk_caps_density_at_one():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(1000, 1000), nn.Linear(1000, 2))
    sparsify(model, sparsity=0.5, distribution="erk", verbose=False)
    assert model[0].n_params == 16 and model[0].density == 1.0
    assert abs(model[0].n_params + model[1].n_params - 0.5 * (16 + 1000 * 1000)) <= 2


def test_uniform_sparsity_per_layer():
    model = sparsify(_mlp(), sparsity=0.95, distribution="uniform", verbose=False)
    for layer in (model[0], model[2]):
        assert abs(layer.n_params - 0.05 * layer.in_features * layer.out_features) <= 1


def test_copy_keeps_the_original_and_exclude_keeps_named_layers():
    original = _mlp()
    copy = sparsify(original, epsilon=20, inplace=False, exclude=["2"], verbose=False)
    assert type(original[0]) is nn.Linear and type(copy[0]) is SETLayer and type(copy[2]) is nn.Linear


def test_cnn_classifier_only_and_patterns():
    model = sparsify(_CNN(), epsilon=10, exclude=["features.*"], verbose=False)
    assert type(model.head[0]) is SETLayer and type(model.head[2]) is nn.Linear
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_keep_weights_starts_from_the_dense_values():
    dense = _mlp()
    model = sparsify(dense, epsilon=20, inplace=False, keep_weights=True, verbose=False)
    layer = model[0]
    expected = dense[0].weight[layer.connections[:, 1], layer.connections[:, 0]]
    assert torch.equal(layer.weight.detach(), expected.detach()) and torch.equal(layer.bias, dense[0].bias)


def test_device_dtype_and_a_shared_layer_are_kept():
    shared = nn.Linear(20, 20).double()
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(20, 2).double())
    sparsify(model, epsilon=2, verbose=False)
    assert model[0] is model[2] and model[0].weight.dtype == torch.float64


@pytest.mark.parametrize(
    "model, kwargs, match",
    [
        (nn.Sequential(nn.Conv2d(1, 2, 3)), dict(epsilon=20), "has no nn.Linear layer to replace"),
        (nn.Sequential(nn.Linear(10, 2)), dict(epsilon=20), "has no nn.Linear layer to replace"),
        (nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)), dict(), "takes epsilon"),
        (nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)), dict(epsilon=2, sparsity=0.5), "takes epsilon \\(and no sparsity\\)"),
        (nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)), dict(sparsity=0.5, distribution="erk", epsilon=3), "takes sparsity"),
        (nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)), dict(sparsity=1.0, distribution="erk"), "sparsity must be in"),
        (nn.Sequential(nn.Linear(10, 10).half(), nn.Linear(10, 2)), dict(epsilon=2), "layer '0' is torch.float16"),
        (nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)), dict(epsilon=2, regrowth="magic"), "regrowth must be one of"),
    ],
)
def test_what_it_cannot_handle_is_one_clear_error(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sparsify(model, verbose=False, **kwargs)
