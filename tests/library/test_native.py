"""The compiled CPU kernels (synapses.native): exact against dense references in every
layout, batch and dtype they meet, and refused with a reason where they cannot run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

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


def test_the_kernels_run_in_torchs_openmp_runtime_so_they_follow_its_thread_count():
    # built without OpenMP, at::parallel_for is a plain loop: one thread whatever torch says
    module = Path(native.load().__file__).read_bytes()
    assert b"GOMP_parallel" in module
    assert b"libgomp.so.1" in module  # needed by soname: the loader reuses the copy torch loaded
    if Path("/proc/self/maps").exists():
        # one runtime under that soname, torch's (other packages' copies are named apart,
        # libgomp-<hash>.so.1, and serve only them)
        maps = Path("/proc/self/maps").read_text().splitlines()
        runtimes = {line.split()[-1] for line in maps if line.endswith("/libgomp.so.1")}
        assert len(runtimes) <= 1, runtimes


@pytest.mark.skipif(sys.platform != "linux", reason="OpenMP is used on Linux only")
def test_openmp_only_with_a_compiler_that_links_torchs_runtime(tmp_path, monkeypatch):
    # clang's -fopenmp links LLVM's runtime, a second one beside torch's: that build stays serial
    fakes = {}
    for name, banner in (("gcc-like", "c++ (Debian 14.2.0-19) 14.2.0"), ("clang-like", "Debian clang version 19.1.7")):
        script = tmp_path / name
        script.write_text(f"#!/bin/sh\necho '{banner}'\n")
        script.chmod(0o755)
        fakes[name] = str(script)
    monkeypatch.setenv("CXX", fakes["gcc-like"])
    assert native.openmp_flags() == ["-fopenmp"] and "-fopenmp" in native.cflags()
    monkeypatch.setenv("CXX", fakes["clang-like"])
    assert native.openmp_flags() == [] and "-fopenmp" not in native.cflags()
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert native.openmp_flags() == ["-fopenmp"]  # the build itself will say the compiler is missing


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
def test_int32_and_int64_indices_give_bit_identical_outputs_and_gradients(dtype):
    from synapses.sparse_ops import CSRIndex

    torch.manual_seed(1)
    layer = SETLayer(300, 200, sparsity=0.9, dtype=dtype)
    x, grad_y = torch.randn(150, 300, dtype=dtype), torch.randn(150, 200, dtype=dtype)
    results = {}
    for compact in (False, True):
        index = CSRIndex.build(layer.connections, 300, 200, compact)
        expected = torch.int32 if compact else torch.int64
        assert {t.dtype for t in (index.crow, index.col, index.order, index.crow_t, index.col_t, index.order_t)} == {
            expected
        }
        y = native.linear_t(x, layer.weight.detach(), layer.bias.detach(), index)
        grads = native.linear_t_backward(grad_y, x, layer.weight.detach(), index, True, True, True, True)
        results[compact] = (y, *grads)
    for full, compact in zip(results[False], results[True]):
        assert torch.equal(full, compact)


def test_one_index_dtype_is_cached_at_a_time_and_the_other_is_a_cast_not_a_rebuild():
    # a layer whose path changes between calls (compute="measure" at two batch sizes) asks
    # for the int64 index of torch's CSR kernels and the int32 one of the compiled kernels
    from synapses import ops

    layer = SETLayer(300, 200, sparsity=0.9)
    n = layer.n_params
    builds = ops.index_builds()
    wide = ops.index_for(layer.connections, 300, 200, compact=False)
    wide_bytes = ops.cached_index_bytes(layer.connections)
    narrow = ops.index_for(layer.connections, 300, 200, compact=True)
    assert ops.index_builds() == builds + 1  # built once, then cast
    assert narrow.col.dtype == torch.int32 and wide.col.dtype == torch.int64
    for field in ("crow", "col", "order", "crow_t", "col_t", "order_t"):
        assert torch.equal(getattr(narrow, field).long(), getattr(wide, field))
    # the int64 index is gone: 4 int32 arrays of n and the row pointers, plus the content check's copy
    assert ops.cached_index_bytes(layer.connections) == 16 * n + 4 * (201 + 301) + 8 * n
    assert wide_bytes == 32 * n + 8 * (201 + 301) + 8 * n
    assert ops.index_for(layer.connections, 300, 200, compact=True) is narrow


def test_a_native_layer_keeps_an_int32_index_and_never_builds_the_inverse_permutation():
    from synapses import ops

    layer = SETLayer(100, 80, sparsity=0.8, compute="native")
    x = torch.randn(32, 100, requires_grad=True)
    layer(x).sum().backward()
    index = ops.index_for(layer.connections, 100, 80, compact=True)
    assert index.col.dtype == torch.int32 and index.col_t.dtype == torch.int32
    assert "inverse" not in vars(index)  # only torch's CSR path computes it
    assert torch.equal(index.inverse, torch.argsort(index.order))  # and where asked, it is the right one


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


def test_operands_far_beyond_the_cache_take_the_prefetching_loops_and_stay_exact():
    # 140,000 inputs of 16 float64 samples are 18 MB, past both kernels' prefetch thresholds:
    # the loops that announce rows ahead give the dense products like the others
    torch.manual_seed(0)
    layer = SETLayer(140_000, 9, epsilon=1, compute="native", dtype=F64)
    # 144 samples: a whole 128-sample chunk for the weight gradient's prefetching loop, and a
    # partial one after it
    x = torch.randn(144, 140_000, dtype=F64, requires_grad=True)
    grad_y = torch.randn(144, 9, dtype=F64)
    y = layer(x)
    y.backward(grad_y)
    ref_y, ref_x, ref_w, ref_b = dense_step(layer, x, grad_y)
    tol = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, ref_y, **tol)
    torch.testing.assert_close(x.grad, ref_x, **tol)
    torch.testing.assert_close(layer.weight.grad, ref_w, **tol)
    torch.testing.assert_close(layer.bias.grad, ref_b, **tol)


def test_memory_bytes_names_each_part_a_layer_holds():
    layer = SETLayer(61, 45, epsilon=6, compute="native")
    n = layer.n_params
    before = {"weight": 4 * n, "bias": 4 * 45, "gradients": 0, "connections": 8 * n, "pruned": n, "index": 0}
    assert layer.memory_bytes() == before
    layer(torch.randn(3, 61)).sum().backward()
    # int32 col, order, col_t, order_t and the two row pointers, and the content check's
    # copy of the (int32) connections (kept up to CONTENT_CHECK_MAX connections)
    index = 4 * 4 * n + 4 * (45 + 1) + 4 * (61 + 1) + 8 * n
    assert layer.memory_bytes() == before | {"gradients": 4 * n + 4 * 45, "index": index}


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


# ---------------------------------------------------------------- kernels compiled into a wheel
def _record(**changes: object) -> dict:
    """The record setup.py writes beside kernels it compiled, for this environment."""
    record = {
        "torch": torch.__version__,
        "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
        "python": "{}.{}".format(*sys.version_info[:2]),
        "cflags": native.cflags(),
        "source_sha256": hashlib.sha256(native.SOURCE.read_bytes()).hexdigest(),
    }
    return record | changes


def test_kernels_built_into_a_wheel_for_another_torch_are_not_used_and_it_is_said(tmp_path, monkeypatch, caplog):
    assert native.built_in_mismatch(_record()) is None
    assert native.built_in_mismatch(_record(torch="2.13.0")) == (
        f"they were built for torch 2.13.0, this is torch {torch.__version__}"
    )
    asked = " ".join(flag for flag in native.cflags() if flag != "-fopenmp")
    assert native.built_in_mismatch(_record(cflags=["-O3", "-march=native"])) == (
        f"they were built with -O3 -march=native, this environment asks for {asked}"
    )
    # a wheel built with OpenMP stays usable where this environment's compiler is clang (which
    # a local build would not give -fopenmp): what matters is the instruction set
    built_flags = native.cflags() if "-fopenmp" in native.cflags() else [*native.cflags(), "-fopenmp"]
    with_openmp = _record(cflags=built_flags)
    monkeypatch.setattr(native, "openmp_flags", lambda: [])
    assert native.built_in_mismatch(with_openmp) is None
    assert "source differs" in str(native.built_in_mismatch(_record(source_sha256="0" * 64)))
    record = tmp_path / "_kernels_build.json"
    monkeypatch.setattr(native, "BUILT_IN_RECORD", record)
    assert native._built_in() is None  # no record (a checkout, an isolated build): silent, built at first use
    record.write_text(json.dumps(_record(torch="2.13.0")))
    with caplog.at_level("WARNING", logger="synapses"):
        assert native._built_in() is None
    assert caplog.messages == [
        "synapses: not using the CPU kernels compiled into this installation: they were built for torch 2.13.0, this "
        f"is torch {torch.__version__}; building them instead"
    ]
    caplog.clear()
    record.write_text(json.dumps(_record()))  # matches, but this checkout has no synapses._kernels
    with caplog.at_level("WARNING", logger="synapses"):
        assert native._built_in() is None
    assert caplog.messages[0].startswith("synapses: not using the CPU kernels compiled into this installation: they do")


@pytest.mark.skipif(
    not os.environ.get("CI"),
    reason="builds the wheel (a minute) and installs torch into a fresh virtual environment (2 minutes); CI runs it",
)
@pytest.mark.skipif(native.arch() != native.PORTABLE_ARCH, reason="a wheel's kernels are built for x86-64 with AVX2")
def test_a_wheel_with_compiled_kernels_trains_at_once_with_no_compiler_on_path(tmp_path, torch_venv):
    root = Path(__file__).parents[2]
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", str(root), "--no-build-isolation", "--no-deps", "-q", "-w"]
    subprocess.run([*build, str(wheels)], check=True)
    (wheel,) = wheels.glob("synapses_set-*.whl")
    assert {"synapses/_kernels_build.json"} < set(zipfile.ZipFile(wheel).namelist())
    venv, python = torch_venv.parents[1], str(torch_venv)
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", str(wheel)], check=True
    )
    script = """
import logging, shutil
import torch, synapses
from synapses import native
logging.basicConfig(level=logging.INFO, format="%(message)s")
assert shutil.which("c++") is None and shutil.which("g++") is None, "a compiler is on PATH"
layer = synapses.SETLayer(784, 512, epsilon=5)  # compute="auto": sparse enough for the compiled kernels
optimizer = torch.optim.SGD(layer.parameters(), lr=0.01)
optimizer.zero_grad()
layer(torch.randn(128, 784)).sum().backward()
optimizer.step()
print(layer.kernel_for(128), native.load().__name__)
"""
    # no compiler: PATH holds the clean environment's bin alone; a fresh extensions cache
    environment = {key: value for key, value in os.environ.items() if key not in ("CXX", "CC")}
    environment |= {"PATH": str(venv / "bin"), "TORCH_EXTENSIONS_DIR": str(tmp_path / "extensions")}
    assert shutil.which("c++", path=environment["PATH"]) is None
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, env=environment, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # the wheel's module, loaded with no compiler to build another: the first step cannot
    # have waited for a build
    assert out.stdout.split() == ["native", "synapses._kernels"]
    assert "using the CPU kernels compiled into this installation" in out.stderr
