"""synapses by torch's rules (issue 37): sparsified transformers at inference, the kernels as
custom operators (compile without recompiles, export), conversion both ways (densify,
from_dense, to_linear), dtypes refused where they are set, the kernels' build announced and
keyed per environment, and sparsify's refusal naming the way out."""

from __future__ import annotations

import copy
import itertools
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import synapses
from synapses import SETLayer, native, ops
from synapses_study.training import rounding

F64 = torch.float64
COMPUTES = ["sparse", "native", "dense"]


# ---------------------------------------------------------------- 1. transformers at inference
def _encoder(layers: int = 2) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=True)


def _slow_path_reference(model: nn.Module, *args, **kwargs) -> torch.Tensor:
    """``model``'s SETLayers densified, run in training mode (dropout is 0): torch's plain
    path, never the fused one, on the same weights."""
    reference = synapses.densify(copy.deepcopy(model)).train()
    with torch.no_grad():
        return reference(*args, **kwargs)


@pytest.mark.parametrize("grad_mode", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("padding", [False, True], ids=["no-mask", "padding-mask"])
def test_a_sparsified_transformer_encoder_runs_at_inference(grad_mode, padding):
    torch.manual_seed(0)
    model = synapses.sparsify(_encoder(), epsilon=4, keep_output_dense=False, verbose=False).eval()
    assert isinstance(model.layers[0].linear1, SETLayer) and isinstance(model.layers[1].linear2, SETLayer)
    x = torch.randn(3, 5, 16)
    mask = torch.tensor([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]]) if padding else None
    with getattr(torch, grad_mode)():
        y = model(x, src_key_padding_mask=mask)  # torch's fast path would read linear1.weight as a matrix
    expected = _slow_path_reference(model, x, src_key_padding_mask=mask)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_a_set_layer_assigned_by_hand_keeps_the_encoder_layer_off_its_fused_path():
    torch.manual_seed(0)
    block = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval()
    block.linear1 = SETLayer(16, 32, epsilon=4)
    x = torch.randn(2, 4, 16)
    with torch.no_grad():
        y = block(x)
    torch.testing.assert_close(y, _slow_path_reference(block, x), rtol=1e-5, atol=1e-5)


def test_a_sparsified_transformer_decoder_layer_runs_at_inference():
    torch.manual_seed(0)
    model = synapses.sparsify(
        nn.TransformerDecoderLayer(16, 2, 32, dropout=0.0, batch_first=True),
        epsilon=4,
        keep_output_dense=False,
        verbose=False,
    ).eval()
    target, memory = torch.randn(2, 4, 16), torch.randn(2, 6, 16)
    with torch.no_grad():
        y = model(target, memory)
    torch.testing.assert_close(y, _slow_path_reference(model, target, memory), rtol=1e-5, atol=1e-5)


class _AttentionBlock(nn.Module):
    """Attention (torch's MultiheadAttention, its own fused path) and a sparse MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16))
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(x, x, x, need_weights=False)[0]
        return self.head(x + self.mlp(x))


def test_a_model_with_multihead_attention_runs_at_inference():
    torch.manual_seed(0)
    model = synapses.sparsify(_AttentionBlock(), epsilon=4, verbose=False).eval()
    assert isinstance(model.mlp[0], SETLayer) and type(model.attention.out_proj) is not SETLayer
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        y = model(x)
    torch.testing.assert_close(y, _slow_path_reference(model, x), rtol=1e-5, atol=1e-5)


def test_a_nested_tensor_is_refused_in_one_line():
    layer = SETLayer(4, 3, epsilon=1)
    nested = torch.nested.nested_tensor([torch.randn(2, 4), torch.randn(3, 4)])
    with pytest.raises(ValueError, match="nested tensor .* use_nested_tensor = False") as error:
        layer(nested)
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- 2. custom operators, compile
def _deep_model(compute: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(12):
        layers += [SETLayer(24, 24, epsilon=4, compute=compute, dtype=F64), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(24, 3, dtype=F64))


def _train(model: nn.Module, forward, steps: int = 15) -> list[float]:
    """``steps`` SGD steps with an evolution every 3 (5 in all); the losses."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    evolution = synapses.Evolution(model, optimizer, every=3)
    data = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x, y = torch.randn(16, 24, generator=data, dtype=F64), torch.randint(0, 3, (16,), generator=data)
        optimizer.zero_grad()
        loss = F.cross_entropy(forward(x), y)
        loss.backward()
        optimizer.step()
        evolution.step()
        losses.append(loss.item())
    return losses


def _compiled_training(compute: str, backend: str) -> tuple[nn.Module, list[float], nn.Module, list[float]]:
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = _deep_model(compute)
    eager = copy.deepcopy(model)
    torch.manual_seed(5)  # the evolutions' draws
    eager_losses = _train(eager, eager)
    torch._dynamo.reset()
    counters.clear()
    before = [layer.connections.clone() for layer in model.modules() if isinstance(layer, SETLayer)]
    compiled = torch.compile(model, backend=backend)
    torch.manual_seed(5)
    # any recompilation (a guard failing after an evolution) raises instead of recompiling
    with torch._dynamo.config.patch(error_on_recompile=True):
        losses = _train(model, compiled)
    assert counters["stats"]["unique_graphs"] == 1  # one graph, compiled once, for 15 steps and 5 evolutions
    after = [layer.connections for layer in model.modules() if isinstance(layer, SETLayer)]
    assert all(not torch.equal(a, b) for a, b in zip(before, after))  # every layer did evolve
    return model, losses, eager, eager_losses


@pytest.mark.parametrize("compute", COMPUTES)
def test_a_compiled_model_survives_evolutions_without_recompiling(compute):
    # aot_eager: the graph, the fake implementations and the autograd formulas of the
    # operators, as inductor sees them, without inductor's own rounding (or its minutes)
    builds = ops.index_builds()
    model, losses, eager, eager_losses = _compiled_training(compute, "aot_eager")
    assert losses == eager_losses
    for (name, value), expected in zip(model.state_dict().items(), eager.state_dict().values()):
        assert torch.equal(value, expected), name
    if compute != "dense":
        # one index per topology a forward met, never one per step: 12 layers x (the first and
        # 4 evolutions; the 5th comes after the last step), eager and compiled
        assert ops.index_builds() - builds == 2 * 12 * 5


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_an_inductor_compiled_model_survives_evolutions_without_recompiling(threads):
    torch.set_num_threads(threads)  # the fixture in conftest restores it
    model, losses, eager, eager_losses = _compiled_training("native", "inductor")
    torch.testing.assert_close(losses, eager_losses, rtol=1e-12, atol=1e-12)  # inductor's fused loss rounds its own way
    for value, expected in zip(model.state_dict().values(), eager.state_dict().values()):
        torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)


# One compiled forward of _deep_model's 12 native layers, against eager, in a fresh process.
_COMPILED_FORWARD = """
import sys
if sys.argv[1] == "pinned":
    from synapses_study.training.rounding import pin
    pin()
import copy, torch
sys.path.insert(0, sys.argv[2])
from test_torch_rules import _deep_model
torch.set_num_threads(1)
torch.manual_seed(0)
model = _deep_model("native")
x = torch.randn(16, 24, dtype=torch.float64)
expected = copy.deepcopy(model)(x)
print((torch.compile(model)(x) - expected).abs().max().item())
"""


@pytest.mark.slow
@pytest.mark.skipif(not rounding.pinnable(), reason="needs an x86-64 processor with AVX2 and FMA")
def test_a_pinned_process_never_loads_a_graph_an_unpinned_one_compiled(tmp_path):
    # torch's compile cache is not keyed by ATEN_CPU_CAPABILITY: a pinned process that loaded
    # this graph as an unpinned one (AVX-512) had compiled it got wrong values (one thread,
    # 12 layers, torch 2.14.1); pin() gives pinned processes a cache of their own
    env = {k: v for k, v in os.environ.items() if k not in (*rounding.PINNED_ENV, rounding.INDUCTOR_CACHE_VARIABLE)}
    env |= {"TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"}  # torch's default cache, under tmp_path

    def compiled_against_eager(mode: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", _COMPILED_FORWARD, mode, str(Path(__file__).parent)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return float(done.stdout.split()[-1])

    assert compiled_against_eager("unpinned") <= 1e-12  # fills torch's default cache
    assert compiled_against_eager("pinned") <= 1e-12
    pinned = Path(rounding.pinned_inductor_cache()).name  # the two caches, side by side
    assert {p.name for p in tmp_path.iterdir() if p.name.startswith("torchinductor_")} == {
        pinned.removesuffix("_pinned_avx2"),
        pinned,
    }


@pytest.mark.parametrize("kernel", ["sparse", "native"])
def test_the_operators_pass_torchs_checks(kernel):
    # schema, fake (meta) implementation against the real one, autograd registration
    torch.manual_seed(0)
    layer = SETLayer(12, 7, epsilon=2, dtype=F64)
    x = torch.randn(5, 12, dtype=F64, requires_grad=True)
    args = (x, layer.weight, layer.bias, layer.connections, 7, kernel, False)
    torch.library.opcheck(ops.linear, args)
    grad_y = torch.randn(5, 7, dtype=F64)
    torch.library.opcheck(
        ops.linear_backward,
        (grad_y, x.detach(), layer.weight.detach(), layer.connections, 7, kernel, False, True, True, True, True),
    )
    torch.library.opcheck(ops.sampled, (grad_y.requires_grad_(), x, layer.connections, False))


def _storages(*tensors: torch.Tensor) -> list[int]:
    return [t.untyped_storage().data_ptr() for t in tensors if t.numel()]


@pytest.mark.parametrize("kernel", ["sparse", "native"])
@pytest.mark.parametrize("batch", [1, 16, 130, 600], ids=lambda b: f"batch{b}")  # one lane, one chunk, chunks, tiles
def test_the_operators_outputs_are_fresh_and_fully_written(kernel, batch):
    # what inductor assumes of an operator whose schema says it mutates and aliases nothing: its
    # outputs share no memory with its inputs or with each other (inductor reuses their buffers,
    # and writes into them in place, once it is done with them), every element is written (with
    # torch's uninitialised-memory fill, an unwritten one reads NaN) and the strides are the fake
    # implementation's, for every layout, orientation and gradient asked for
    torch.manual_seed(0)
    layer = SETLayer(24, 20, epsilon=3, dtype=F64)
    weight, connections = layer.weight.detach(), layer.connections
    fill = torch.utils.deterministic.fill_uninitialized_memory
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        for transpose, feature_major in itertools.product([False, True], repeat=2):
            k, rows = (20, 24) if transpose else (24, 20)
            x, grad_y = torch.randn(batch, k, dtype=F64), torch.randn(batch, rows, dtype=F64)
            if feature_major:  # the layout the compiled kernels hand on
                x, grad_y = x.t().contiguous().t(), grad_y.t().contiguous().t()
            bias = torch.randn(rows, dtype=F64)
            inputs = _storages(x, weight, bias, connections, grad_y)
            y = ops.linear(x, weight, bias, connections, rows, kernel, transpose)
            fake = ops.linear(*(a.to("meta") for a in (x, weight, bias, connections)), rows, kernel, transpose)
            assert y.stride() == fake.stride() and not set(_storages(y)) & set(inputs)
            assert not y.isnan().any()
            for needs in itertools.product([False, True], repeat=4):
                grads = ops.linear_backward(grad_y, x, weight, connections, rows, kernel, transpose, *needs)
                written = _storages(*grads)
                assert len(set(written)) == len(written) and not set(written) & set(inputs), needs
                assert not any(grad.isnan().any() for grad in grads), needs
            sampled = ops.sampled(grad_y, x, connections, transpose)
            assert not set(_storages(sampled)) & set(inputs) and not sampled.isnan().any()
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])


def test_the_operators_second_derivatives_match_dense():
    # create_graph=True through the operator's own backward (the compiled path's), not the eager one's
    torch.manual_seed(0)
    layer = SETLayer(12, 7, epsilon=2, dtype=F64)
    x = torch.randn(5, 12, dtype=F64, requires_grad=True)

    def penalty(weight, x, linear):
        (grad_x,) = torch.autograd.grad(linear(x, weight).pow(2).sum(), x, create_graph=True)
        return grad_x.pow(3).sum()

    sparse = penalty(layer.weight, x, lambda x, w: ops.linear(x, w, None, layer.connections, 7, "native"))
    grad_w, grad_x = torch.autograd.grad(sparse, (layer.weight, x))
    dense = layer.to_dense().detach().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    reference = penalty(dense, x_ref, lambda x, w: x @ w.T)
    ref_w, ref_x = torch.autograd.grad(reference, (dense, x_ref))
    torch.testing.assert_close(sparse, reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_x, ref_x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_w, ref_w[layer.connections[:, 1], layer.connections[:, 0]], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- 3. export, densify, ONNX
@pytest.mark.parametrize("strict", [False, True], ids=["non-strict", "strict"])
@pytest.mark.parametrize("compute", COMPUTES)
def test_torch_export_of_a_sparsified_model_equals_eager(compute, strict):
    torch.manual_seed(0)
    model = nn.Sequential(SETLayer(20, 16, epsilon=3, compute=compute), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(5, 20)
    program = torch.export.export(model, (x,), strict=strict)
    assert torch.equal(program.module()(x), model(x))
    if compute != "dense":
        assert any("synapses.linear" in str(node.target) for node in program.graph.nodes)


def _two_layer_model() -> nn.Module:
    torch.manual_seed(0)
    shared = SETLayer(10, 10, epsilon=2)
    return nn.Sequential(SETLayer(8, 10, epsilon=2), nn.ReLU(), shared, nn.ReLU(), shared, nn.Linear(10, 3))


def test_densify_gives_linear_layers_with_the_exact_weights():
    model = _two_layer_model()
    x = torch.randn(4, 8)
    expected = model(x)
    sparse_layers = [model[0], model[2]]
    state = torch.get_rng_state()
    dense = synapses.densify(model, inplace=False)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn
    assert all(isinstance(m, SETLayer) for m in (model[0], model[2]))  # the original is left alone
    assert not any(isinstance(m, SETLayer) for m in dense.modules())
    assert dense[2] is dense[4]  # a layer registered twice is one Linear registered twice
    for layer, linear in zip(sparse_layers, (dense[0], dense[2])):
        assert type(linear) is nn.Linear and linear.weight.dtype == layer.weight.dtype
        assert torch.equal(linear.weight, layer.to_dense())
        assert torch.equal(linear.bias, layer.bias)
        assert int((linear.weight != 0).sum()) == int((layer.weight != 0).sum())
    torch.testing.assert_close(dense(x), expected, rtol=1e-6, atol=1e-6)
    assert synapses.densify(model) is model and isinstance(model[0], nn.Linear)  # in place by default


def test_to_linear_and_from_dense_round_trip():
    torch.manual_seed(0)
    layer = SETLayer(30, 20, epsilon=3, dtype=F64)
    linear = layer.to_linear()
    assert linear.weight.dtype == F64 and torch.equal(linear.weight, layer.to_dense())
    # the n largest |w| of the densified layer are exactly the layer's connections
    back = SETLayer.from_dense(linear, epsilon=3, connections="largest")
    order, back_order = torch.argsort(layer.connection_keys()), torch.argsort(back.connection_keys())
    assert torch.equal(back.connections[back_order], layer.connections[order])
    assert torch.equal(back.weight[back_order], layer.weight[order])
    assert torch.equal(back.bias, layer.bias)
    x = torch.randn(6, 30, dtype=F64)
    torch.testing.assert_close(back(x), linear(x), rtol=1e-12, atol=1e-12)


def test_from_dense_keeps_the_dense_weights_at_random_connections():
    torch.manual_seed(0)
    linear = nn.Linear(30, 20, bias=False)
    layer = SETLayer.from_dense(linear, sparsity=0.75, zeta=0.1)
    assert layer.n_params == 150 and layer.bias is None and layer.zeta == 0.1
    assert torch.equal(layer.weight, linear.weight[layer.connections[:, 1], layer.connections[:, 0]])
    fresh = SETLayer.from_dense(linear, sparsity=0.75, keep_weights=False)
    assert not torch.equal(fresh.weight, linear.weight[fresh.connections[:, 1], fresh.connections[:, 0]])
    with pytest.raises(TypeError, match="takes an nn.Linear, got SETLayer"):
        SETLayer.from_dense(layer)
    with pytest.raises(ValueError, match="connections must be 'random' or 'largest', got 'top'"):
        SETLayer.from_dense(linear, connections="top")


@pytest.mark.parametrize("compute", ["sparse", "native"])
@pytest.mark.parametrize("given", ["model", "exported-program"])
def test_onnx_export_of_a_sparse_model_says_to_densify_first(tmp_path, given, compute):
    # torch's exporter captures the model non-strict, then strict (dynamo, where the layer's
    # torch.onnx.is_in_onnx_export() reads False); the operators' fake implementations refuse
    # in both, and when given an ExportedProgram, in its decompositions
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = nn.Sequential(SETLayer(20, 16, epsilon=3, compute=compute), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(2, 20)
    exported = model if given == "model" else torch.export.export(model, (x,))
    with pytest.raises(Exception, match=r"densify\(model\)") as error:
        torch.onnx.export(exported, (x,), str(tmp_path / "sparse.onnx"), dynamo=True, verbose=False)
    assert ops.ONNX_REFUSAL in str(error.value)
    # the refusal is the exporter's alone: torch.export and the model itself are left as they were
    assert torch.equal(torch.export.export(model, (x,)).module()(x), model(x))


def test_onnx_export_of_a_densified_model(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = nn.Sequential(SETLayer(20, 16, epsilon=3), nn.ReLU(), nn.Linear(16, 4))
    torch.onnx.export(synapses.densify(model), (torch.randn(2, 20),), str(tmp_path / "dense.onnx"), dynamo=True)
    onnx.checker.check_model(onnx.load(str(tmp_path / "dense.onnx")))


# ---------------------------------------------------------------- 4. dtypes where they are set
@pytest.mark.parametrize(
    "convert, dtype",
    [
        (lambda m: m.to(torch.bfloat16), "torch.bfloat16"),
        (lambda m: m.half(), "torch.float16"),
        (lambda m: m.to("cpu", torch.float16), "torch.float16"),
    ],
    ids=["to-bfloat16", "half", "to-device-and-dtype"],
)
def test_an_unsupported_dtype_is_refused_at_to(convert, dtype):
    model = nn.Sequential(SETLayer(8, 6, epsilon=2), nn.ReLU())
    with pytest.raises(ValueError, match=f"cannot be converted to {dtype}: it supports dtype float32 and float64") as e:
        convert(model)
    assert "\n" not in str(e.value)
    assert model[0].weight.dtype == torch.float32 and model[0].bias.dtype == torch.float32  # nothing converted
    assert model.double()[0].weight.dtype == F64  # the supported ones still convert


def test_under_autocast_a_set_layer_computes_in_float32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), SETLayer(8, 6, epsilon=2, compute="sparse"))
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = model[0](x)
        y = model[1](hidden)
    assert hidden.dtype == torch.bfloat16 and y.dtype == torch.float32
    assert torch.equal(y, model[1](hidden.float()))


# ---------------------------------------------------------------- 5. the kernels' build
def test_two_torch_installations_give_two_build_tags(monkeypatch):
    here = native.build_tag()
    monkeypatch.setattr(torch, "__file__", "/elsewhere/venv/lib/python3.11/site-packages/torch/__init__.py")
    elsewhere = native.build_tag()
    assert here != elsewhere and len(elsewhere) == 8
    monkeypatch.setattr(torch, "__file__", "/elsewhere/venv/lib/python3.11/site-packages/torch/__init__.py")
    assert native.build_tag() == elsewhere  # a function of the installation, not of the call


def test_every_build_is_announced(monkeypatch, tmp_path, caplog):
    from torch.utils import cpp_extension

    builds = []

    def fake_load(name, **kwargs):  # a build writes the library anew
        builds.append(name)
        (tmp_path / f"{name}.so").write_bytes(b"x" * len(builds))
        return object()

    monkeypatch.setattr(cpp_extension, "_get_build_directory", lambda name, verbose: str(tmp_path))
    monkeypatch.setattr(cpp_extension, "load", fake_load)
    monkeypatch.delenv("SYNAPSES_NO_NATIVE", raising=False)
    with caplog.at_level(logging.WARNING, logger="synapses"):
        native._build()  # no build yet: announced before and after
        first = [r.getMessage() for r in caplog.records]
        caplog.clear()
        native._build()  # a rebuild over an existing one (torch's loader decided): announced after
        second = [r.getMessage() for r in caplog.records]
    assert len(builds) == 2
    assert len(first) == 2 and "compiling the CPU kernels" in first[0] and "compiled the CPU kernels in" in first[1]
    assert len(second) == 1 and "compiled the CPU kernels in" in second[0] and str(tmp_path) in second[0]


def test_loading_an_existing_build_says_nothing(monkeypatch, tmp_path, caplog):
    from torch.utils import cpp_extension

    monkeypatch.setattr(cpp_extension, "_get_build_directory", lambda name, verbose: str(tmp_path))
    monkeypatch.setattr(cpp_extension, "load", lambda name, **kwargs: object())
    monkeypatch.delenv("SYNAPSES_NO_NATIVE", raising=False)
    (tmp_path / f"synapses_sparse_linear_{native.build_tag()}.so").write_bytes(b"built")
    with caplog.at_level(logging.INFO, logger="synapses"):
        module, error = native._build()
    assert error is None and module is not None and caplog.records == []


# ---------------------------------------------------------------- 6. sparsify's refusals
def test_sparsify_on_resnet18_names_fc_and_the_argument_that_sparsifies_it():
    models = pytest.importorskip("torchvision.models")
    model = models.resnet18(num_classes=10)
    with pytest.raises(ValueError) as error:
        synapses.sparsify(model, epsilon=5, verbose=False)
    message = str(error.value)
    assert "\n" not in message
    assert "ResNet has no nn.Linear layer to replace: 'fc' is the output layer" in message
    assert "pass keep_output_dense=False to sparsify it" in message
    synapses.sparsify(model, epsilon=5, keep_output_dense=False, verbose=False)
    assert isinstance(model.fc, SETLayer)


def test_the_readme_says_how_to_load_a_whole_model():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "torch.load" in readme and "weights_only=False" in readme
