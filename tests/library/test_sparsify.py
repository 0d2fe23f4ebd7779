"""synapses.sparsify: any model's Linear layers become SETLayers."""

import pickle
import warnings

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


def test_erdos_renyi_replaces_every_linear_but_the_output(caplog, capsys):
    with caplog.at_level("INFO", logger="synapses"):
        model = sparsify(_mlp(), epsilon=20)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["SETLayer", "ReLU", "SETLayer", "ReLU", "Linear"]
    assert model[0].n_params == synapses.erdos_renyi_n_params(784, 300, 20, None)
    assert capsys.readouterr().out == ""  # said through logging, never printed
    assert [r.getMessage() for r in caplog.records] == [
        f"0: Linear(784, 300) -> SETLayer with {model[0].n_params:,} connections (9.22%)",
        f"2: Linear(300, 100) -> SETLayer with {model[2].n_params:,} connections (26.67%)",
        "4: kept dense (the output layer: the last registered; name output_layer= or give example_input= if another "
        "is the output)",
    ]


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
    model = sparsify(_CNN(), epsilon=10, verbose=False)  # convolutions are not linear layers: left as they are
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
        (
            nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)),
            dict(epsilon=2, sparsity=0.5),
            "takes epsilon \\(and no sparsity\\)",
        ),
        (
            nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)),
            dict(sparsity=0.5, distribution="erk", epsilon=3),
            "takes sparsity",
        ),
        (
            nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)),
            dict(sparsity=1.0, distribution="erk"),
            "sparsity must be in",
        ),
        (nn.Sequential(nn.Linear(10, 10).half(), nn.Linear(10, 2)), dict(epsilon=2), "layer '0' is torch.float16"),
        (
            nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)),
            dict(epsilon=2, regrowth="magic"),
            "regrowth must be a synapses.RegrowthRule",
        ),
    ],
)
def test_what_it_cannot_handle_is_one_clear_error(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sparsify(model, verbose=False, **kwargs)


class _Tied(nn.Module):
    """An embedding-style model whose head shares the input projection's weight."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(8, 32, bias=False)
        self.body = nn.Linear(32, 32)
        self.down = nn.Linear(32, 8, bias=False)
        self.head = nn.Linear(8, 32, bias=False)
        self.head.weight = self.up.weight  # tied

    def forward(self, x):
        return self.head(self.down(torch.relu(self.body(self.up(x)))))


def test_tied_weights_stay_tied_and_dense_with_a_warning(caplog):
    model = _Tied()
    with caplog.at_level("INFO", logger="synapses"):
        _, report = sparsify(model, epsilon=2, keep_output_dense=False, return_report=True)
    assert model.head.weight is model.up.weight and type(model.up) is nn.Linear
    assert isinstance(model.body, synapses.SETLayer) and isinstance(model.down, synapses.SETLayer)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("up: kept dense (its weight is shared with head.weight (weight tying)" in m for m in warned)
    assert {type(entry).__name__ for entry in report} == {"Replacement", "KeptDense"}


class _HeadFirst(nn.Module):
    """The head is registered before the body: the last registered is not the output."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16, 3)
        self.body = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16))

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def test_the_output_layer_is_the_one_applied_last_when_an_example_is_given():
    traced = sparsify(_HeadFirst(), epsilon=2, example_input=torch.randn(2, 10), verbose=False)
    assert type(traced.head) is nn.Linear and isinstance(traced.body[2], synapses.SETLayer)
    named = sparsify(_HeadFirst(), epsilon=2, output_layer="head", verbose=False)
    assert type(named.head) is nn.Linear
    _, report = sparsify(_HeadFirst(), epsilon=2, verbose=False, return_report=True)
    kept = [e for e in report if type(e).__name__ == "KeptDense"]
    assert kept[0].name == "body.2" and "name output_layer= or give example_input=" in kept[0].reason


def test_linear_subclasses_are_kept_dense_and_said(caplog):
    attention = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
    with caplog.at_level("WARNING", logger="synapses"):
        sparsify(attention, epsilon=2, keep_output_dense=False)
    assert type(attention.self_attn.out_proj) is not synapses.SETLayer
    assert any(
        "self_attn.out_proj: kept dense (a subclass of nn.Linear (NonDynamicallyQuantizableLinear)" in r.getMessage()
        for r in caplog.records
    )
    assert attention(torch.randn(2, 5, 16)).shape == (2, 5, 16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            dict(epsilon=2, exclude=["encoder.*"]),
            "exclude pattern 'encoder.\\*' matches no linear layer; their names: 0, 1",
        ),
        (dict(sparsity=0.9), "sparsity=0.9 needs distribution='erk' or 'uniform'"),
        (dict(epsilon=2, output_layer="nope"), "output_layer='nope' is not a linear layer"),
    ],
)
def test_arguments_that_would_do_nothing_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sparsify(nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)), verbose=False, **kwargs)


def test_a_head_first_model_warns_at_its_first_forward_naming_both_layers_and_the_fix():
    model = sparsify(_HeadFirst(), epsilon=2, verbose=False)
    assert type(model.body[2]) is nn.Linear and isinstance(model.head, synapses.SETLayer)  # the guess was wrong
    copied = pickle.loads(pickle.dumps(model))  # the hooks pickle with the model, before the first call
    for net in (model, copied):
        with pytest.warns(UserWarning) as caught:
            net(torch.randn(2, 10))
        assert [str(w.message) for w in caught] == [
            "sparsify kept 'body.2' dense as the output layer (the last registered), but the model applies 'head' "
            "last, which it sparsified; pass output_layer='head' (or example_input=) to sparsify to keep the real "
            "output layer dense"
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            net(torch.randn(2, 10))  # once: the hooks are gone
        hooks = [h for m in net.modules() for h in [*m._forward_hooks.values(), *m._forward_pre_hooks.values()]]
        owners = [getattr(getattr(h, "func", h), "__self__", None) for h in hooks]
        assert not any(type(owner).__name__ == "_OutputLayerCheck" for owner in owners)
    # the fix named in the warning silences it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sparsify(_HeadFirst(), epsilon=2, output_layer="head", verbose=False)(torch.randn(2, 10))
        sparsify(nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3)), epsilon=2, verbose=False)(
            torch.randn(2, 10)
        )  # body first: the last registered is the one applied last, nothing to say
