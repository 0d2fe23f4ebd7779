"""The compiled CPU kernels (synapses.native): exact against dense references in every
layout, batch and dtype they meet, and refused with a reason where they cannot run."""

from __future__ import annotations

import pytest
import torch

from synapses import SETLayer, native

F64 = torch.float64


def dense_step(layer: SETLayer, x: torch.Tensor, grad_y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Output and gradients (input, weight at the connections, bias) through the dense matrix."""
    weight = layer.to_dense().detach().requires_grad_()
    bias = layer.bias.detach().clone().requires_grad_()
    x = x.detach().clone().requires_grad_()
    y = x @ weight.T + bias
    y.backward(grad_y)
    inputs, outputs = layer.connections[:, 0], layer.connections[:, 1]
    return y.detach(), x.grad, weight.grad[outputs, inputs], bias.grad


# Batches around the kernels' vector (16 samples) and chunk (128) sizes; widths that are not
# multiples of the 8 x 8 transpose tile.
@pytest.mark.parametrize("batch", [1, 7, 16, 17, 128, 130, 300])
@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
def test_forward_and_gradients_match_dense(batch, dtype):
    torch.manual_seed(batch)
    layer = SETLayer(61, 45, epsilon=6, compute="native", dtype=dtype)
    x = torch.randn(batch, 61, dtype=dtype, requires_grad=True)
    grad_y = torch.randn(batch, 45, dtype=dtype)
    y = layer(x)
    y.backward(grad_y)
    ref_y, ref_x, ref_w, ref_b = dense_step(layer, x, grad_y)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, ref_y, **tol)
    torch.testing.assert_close(x.grad, ref_x, **tol)
    torch.testing.assert_close(layer.weight.grad, ref_w, **tol)
    torch.testing.assert_close(layer.bias.grad, ref_b, **tol)


@pytest.mark.parametrize("width", [16, 32, 64, 128])
@pytest.mark.parametrize("batch", [7, 40, 130])
def test_every_chunk_width_gives_the_dense_products(width, batch):
    # The kernels choose the chunk width from the operand's size; each width they may choose
    # is exact, with whole chunks and the batch's partial last one.
    torch.manual_seed(batch)
    layer = SETLayer(61, 45, epsilon=6, compute="native", dtype=F64)
    kernels, index = native.load(), layer._csr_index()
    weight, bias = layer.weight.detach(), layer.bias.detach()
    x_t, grad_y_t = torch.randn(61, batch, dtype=F64), torch.randn(45, batch, dtype=F64)
    dense = layer.to_dense().detach()
    tol = dict(rtol=1e-12, atol=1e-12)
    y_t = kernels.linear(x_t, weight, bias, index.crow, index.col, index.order, 61, width)
    torch.testing.assert_close(y_t, dense @ x_t + bias[:, None], **tol)
    grad_x_t = kernels.linear(grad_y_t, weight, None, index.crow_t, index.col_t, index.order_t, 45, width)
    torch.testing.assert_close(grad_x_t, dense.T @ grad_y_t, **tol)
    grad_w, grad_b = kernels.sampled(grad_y_t, x_t, index.crow, index.col, index.order, 61, True, width)
    inputs, outputs = layer.connections[:, 0], layer.connections[:, 1]
    torch.testing.assert_close(grad_w, (grad_y_t @ x_t.T)[outputs, inputs], **tol)
    torch.testing.assert_close(grad_b, grad_y_t.sum(1), **tol)


def test_stacked_layers_pass_feature_major_tensors_without_copies():
    # A layer's output is feature-major (the transpose of a contiguous (out, batch) matrix);
    # the next layer reads it as it is, and the gradients still match the dense network.
    torch.manual_seed(0)
    first = SETLayer(40, 33, epsilon=5, compute="native", dtype=F64)
    second = SETLayer(33, 9, epsilon=3, compute="native", dtype=F64)
    x = torch.randn(50, 40, dtype=F64, requires_grad=True)
    hidden = torch.relu(first(x))
    assert hidden.t().is_contiguous()  # element-wise layers keep the layout
    assert native.feature_major(hidden).data_ptr() == hidden.data_ptr()  # a view, not a copy
    second(hidden).pow(2).sum().backward()

    dense_first, dense_second = first.to_dense().detach().requires_grad_(), second.to_dense().detach().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    (torch.relu(x_ref @ dense_first.T + first.bias) @ dense_second.T + second.bias).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    assert x.grad.is_contiguous()  # a row-major leaf gets its gradient row-major
    for layer, dense in ((first, dense_first), (second, dense_second)):
        conn = layer.connections
        torch.testing.assert_close(layer.weight.grad, dense.grad[conn[:, 1], conn[:, 0]], rtol=1e-12, atol=1e-12)


def test_a_broadcast_output_gradient_is_read_correctly():
    torch.manual_seed(0)
    layer = SETLayer(20, 12, epsilon=3, compute="native", dtype=F64)
    x = torch.randn(9, 20, dtype=F64)
    layer(x).sum().backward()  # the gradient of a sum is a stride-0 tensor
    _, _, ref_w, ref_b = dense_step(layer, x, torch.ones(9, 12, dtype=F64))
    torch.testing.assert_close(layer.weight.grad, ref_w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.bias.grad, ref_b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weight_grad", [True, False], ids=["with-weight-grad", "frozen-weight"])
def test_the_bias_gradient_covers_outputs_without_connections(weight_grad):
    # 12 connections for 40 outputs: most outputs have none, and their bias gradient is
    # still the batch's sum (a whole chunk of 128 samples and a partial one).
    torch.manual_seed(0)
    layer = SETLayer(30, 40, sparsity=0.99, compute="native", dtype=F64)
    layer.weight.requires_grad_(weight_grad)
    assert layer.connections[:, 1].unique().numel() < 40
    grad_y = torch.randn(130, 40, dtype=F64)
    layer(torch.randn(130, 30, dtype=F64)).backward(grad_y)
    torch.testing.assert_close(layer.bias.grad, grad_y.sum(0), rtol=1e-12, atol=1e-12)


def test_without_an_input_gradient_the_weight_gradient_is_still_exact():
    torch.manual_seed(0)
    layer = SETLayer(20, 12, epsilon=3, compute="native", bias=False, dtype=F64)
    x, grad_y = torch.randn(9, 20, dtype=F64), torch.randn(9, 12, dtype=F64)
    (weight_grad,) = torch.autograd.grad(layer(x), layer.weight, grad_y)
    dense = layer.to_dense().detach().requires_grad_()
    (x @ dense.T).backward(grad_y)
    torch.testing.assert_close(
        weight_grad, dense.grad[layer.connections[:, 1], layer.connections[:, 0]], rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("shape", [(1, 1), (8, 8), (13, 29), (128, 512), (300, 17)])
def test_transposed_matches_torch(shape):
    t = torch.randn(*shape)
    assert torch.equal(native.load().transposed(t), t.t().contiguous())
    assert torch.equal(native.load().transposed(t.double()), t.double().t().contiguous())


def test_unavailable_kernels_are_refused_with_the_cause(monkeypatch):
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_error", None)
    monkeypatch.setenv("SYNAPSES_NO_NATIVE", "1")
    assert not native.available()
    with pytest.raises(native.NativeKernelsUnavailable, match="SYNAPSES_NO_NATIVE is set"):
        SETLayer(20, 12, epsilon=3, compute="native")


def test_the_kernels_reject_malformed_operands():
    kernels = native.load()
    layer = SETLayer(20, 12, epsilon=3, compute="native")
    index = layer._csr_index()
    args = (layer.weight, None, index.crow, index.col, index.order, 20)
    with pytest.raises(RuntimeError, match="input has 5 features, the weight 20"):
        kernels.linear(torch.randn(5, 20), *args)  # (batch, features), not (features, batch)
    with pytest.raises(RuntimeError, match="contiguous \\(features, batch\\)"):
        kernels.linear(torch.randn(5, 20).t(), *args)
    with pytest.raises(RuntimeError, match="dtypes differ"):
        kernels.linear(torch.randn(20, 5, dtype=F64), *args)
    with pytest.raises(RuntimeError, match="int64"):
        kernels.linear(torch.randn(20, 5), layer.weight, None, index.crow.int(), index.col, index.order, 20)
    with pytest.raises(RuntimeError, match="chunk width must be 16, 32, 64 or 128 samples, not 48"):
        kernels.linear(torch.randn(20, 5), *args, 48)
    with pytest.raises(RuntimeError, match="cols has 12 features, the weight 20"):
        kernels.sampled(torch.randn(12, 5), torch.randn(12, 5), index.crow, index.col, index.order, 20, False)


def test_the_explicit_build_step_says_ready_or_why_not():
    import os
    import subprocess
    import sys

    off = subprocess.run(
        [sys.executable, "-m", "synapses.compile_kernels"],
        env=os.environ | {"SYNAPSES_NO_NATIVE": "1"},
        capture_output=True,
        text=True,
    )
    assert off.returncode == 1 and "unavailable: SYNAPSES_NO_NATIVE is set" in off.stdout
    if native.available():
        ready = subprocess.run([sys.executable, "-m", "synapses.compile_kernels"], capture_output=True, text=True)
        assert ready.returncode == 0 and "compiled CPU kernels ready" in ready.stdout and ".so" in ready.stdout
