"""SETLayer: equivalence to a dense reference, invariants, errors, state and scale."""

from __future__ import annotations

import io
import math

import pytest
import torch

from synapses import MaskedLinear, SETLayer, SparseNet, dispatch, sparse_ops

F64 = torch.float64
MODES = ["sparse", "native", "dense", "auto"]


def make_layer(in_features=13, out_features=7, *, seed=0, dtype=F64, epsilon=2.0, **kwargs) -> SETLayer:
    torch.manual_seed(seed)
    return SETLayer(in_features, out_features, epsilon=epsilon, dtype=dtype, **kwargs)


def dense_reference(layer: SETLayer, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        y = x @ layer.to_dense().T
        return y + layer.bias if layer.bias is not None else y


def keys_of(layer: SETLayer) -> torch.Tensor:
    conn = layer.connections.long()
    return conn[:, 1] * layer.in_features + conn[:, 0]


def assert_unique_pairs(layer: SETLayer) -> None:
    keys = keys_of(layer)
    assert torch.unique(keys).numel() == keys.numel()


# ---------------------------------------------------------------------------- forward


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("compute", MODES)
@pytest.mark.parametrize("batch_shape", [(5,), (2, 3), (), (0,)], ids=["2d", "3d", "1d", "empty"])
def test_forward_matches_dense(compute, bias, batch_shape):
    layer = make_layer(compute=compute, bias=bias)
    x = torch.randn(*batch_shape, 13, dtype=F64)
    y = layer(x)
    assert y.shape == (*batch_shape, 7)
    torch.testing.assert_close(y, dense_reference(layer, x), rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "in_f, out_f, kwargs, expect_dense",
    [
        (13, 7, dict(epsilon=2.0), True),
        (400, 300, dict(epsilon=2.0), False),  # density below DENSE_MIN_DENSITY
        (1100, 1000, dict(sparsity=0.9), False),  # dense, but over DENSE_MAX_ELEMENTS
    ],
    ids=["small_dense", "low_density", "too_many_elements"],
)
def test_fixed_rule_and_forced_modes_on_cpu(in_f, out_f, kwargs, expect_dense):
    assert SETLayer(in_f, out_f, compute="fixed", **kwargs).uses_dense_kernels() is expect_dense
    assert SETLayer(in_f, out_f, compute="sparse", **kwargs).uses_dense_kernels() is False
    assert SETLayer(in_f, out_f, compute="dense", **kwargs).uses_dense_kernels() is True


@pytest.fixture
def fresh_measurements():
    dispatch.forget_measurements()
    yield
    dispatch.forget_measurements()


@pytest.mark.parametrize("fastest", ["dense", "sparse", "native"])
def test_measure_takes_the_path_measured_fastest_and_remembers_it(fresh_measurements, monkeypatch, fastest):
    timed = []

    def fake_steps(names, key):
        timed.append((tuple(names), key[3]))
        return {name: 1.0 if name == fastest else 2.0 for name in names}

    monkeypatch.setattr(dispatch, "_fastest_steps", fake_steps)
    layer = make_layer(400, 300, compute="measure")
    x = torch.randn(100, 400, dtype=F64)
    assert layer.kernel_for(100) == fastest
    assert layer.uses_dense_kernels(100) is (fastest == "dense")
    torch.testing.assert_close(layer(x), dense_reference(layer, x), rtol=0, atol=1e-10)
    # batch 100 -> size class 128; the compiled kernels compete on the CPU
    assert timed == [(("dense", "sparse", "native"), 128)]
    layer(x[:70])  # same size class: no new measurement
    assert len(timed) == 1
    layer(x[:3])  # another size class
    assert len(timed) == 2


def test_measure_does_without_the_compiled_kernels_where_they_cannot_be_built(fresh_measurements, monkeypatch):
    monkeypatch.setattr(dispatch.native, "available", lambda: False)
    monkeypatch.setattr(
        dispatch, "_fastest_steps", lambda names, key: {name: {"dense": 2.0, "sparse": 1.0}[name] for name in names}
    )
    assert make_layer(400, 300, compute="measure").kernel_for(64) == "sparse"


def test_measure_measures_again_at_another_thread_count(fresh_measurements, monkeypatch):
    calls = []
    monkeypatch.setattr(
        dispatch, "_fastest_steps", lambda names, key: calls.append(key[-1]) or dict.fromkeys(names, 1.0)
    )
    layer = make_layer(400, 300, compute="measure")
    threads = torch.get_num_threads()
    layer.uses_dense_kernels(64)
    try:
        torch.set_num_threads(threads + 1)
        layer.uses_dense_kernels(64)
    finally:
        torch.set_num_threads(threads)
    assert calls == [threads, threads + 1]


def test_measure_never_densifies_a_large_layer(fresh_measurements, monkeypatch):
    timed = []
    monkeypatch.setattr(dispatch, "_fastest_steps", lambda names, key: timed.extend(names) or dict.fromkeys(names, 1.0))
    assert SETLayer(1100, 1000, sparsity=0.9, compute="measure").kernel_for(128) == "sparse"  # a tie: the first listed
    assert timed == ["sparse", "native"]


def test_measure_does_not_time_a_layer_with_very_many_connections(fresh_measurements, monkeypatch):
    monkeypatch.setattr(dispatch, "_fastest_steps", lambda names, key: pytest.fail("timed a very large layer"))
    monkeypatch.setattr(dispatch, "MEASURE_MAX_PARAMS", 1000)
    assert SETLayer(400, 300, epsilon=5, compute="measure").kernel_for(128) == "native"


def test_the_paths_are_timed_in_turns_each_its_fastest_step(monkeypatch):
    order = []

    def recording(name):
        kernel = dispatch.KERNELS[name]
        return lambda *args: order.append(name) or kernel(*args)

    monkeypatch.setattr(dispatch, "KERNELS", {name: recording(name) for name in ("dense", "sparse")})
    key = (30, 20, 60, 8, F64, "cpu", None, 1)
    seconds = dispatch._fastest_steps(["dense", "sparse"], key)
    assert order == ["dense", "sparse"] * (dispatch.REPEATS + 1)  # a warm-up round, then REPEATS
    assert set(seconds) == {"dense", "sparse"} and all(0 < s < float("inf") for s in seconds.values())


def test_the_timing_layer_has_distinct_connections_at_any_size():
    generator = torch.Generator().manual_seed(0)
    small = dispatch._random_pairs(100, 30, generator)
    large = dispatch._random_pairs(10**10, 5000, generator)
    assert len(small) == len(torch.unique(small)) == 30 and small.max() < 100
    assert 4990 <= len(large) == len(torch.unique(large)) and large.max() < 10**10


def test_a_real_measurement_leaves_the_callers_random_state_alone(fresh_measurements):
    layer = make_layer(400, 300, compute="measure")
    state = torch.get_rng_state()
    choice = layer.kernel_for(32)
    assert torch.equal(torch.get_rng_state(), state)
    assert choice in ("dense", "sparse", "native") and layer.kernel_for(32) == choice


def test_wrong_input_width_raises():
    layer = make_layer()
    with pytest.raises(ValueError, match=r"expected input of shape \(\*, 13\), got \(4, 12\)"):
        layer(torch.randn(4, 12, dtype=F64))
    with pytest.raises(ValueError, match="13"):
        layer(torch.randn(13, 4, dtype=F64))


# ---------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("compute", MODES)
def test_gradients_match_dense(compute, bias):
    layer = make_layer(compute=compute, bias=bias)
    conn = layer.connections
    x = torch.randn(2, 3, 13, dtype=F64, requires_grad=True)
    grad_out = torch.randn(2, 3, 7, dtype=F64)
    (layer(x) * grad_out).sum().backward()

    w_dense = layer.to_dense().detach().requires_grad_()
    b_dense = layer.bias.detach().clone().requires_grad_() if bias else None
    x_ref = x.detach().clone().requires_grad_()
    y_ref = x_ref @ w_dense.T
    if bias:
        y_ref = y_ref + b_dense
    (y_ref * grad_out).sum().backward()

    torch.testing.assert_close(layer.weight.grad, w_dense.grad[conn[:, 1], conn[:, 0]], rtol=0, atol=1e-10)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-10)
    if bias:
        torch.testing.assert_close(layer.bias.grad, b_dense.grad, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "batch", [sparse_ops.TILE_MIN_BATCH, 2 * sparse_ops.TILE_MIN_BATCH + 77], ids=["one_tile_size", "ragged_tiles"]
)
def test_batch_tiled_products_match_dense(batch, monkeypatch):
    """Large batches run the CSR products one tile of the batch at a time: the output and
    both gradients, first and second order, are still the dense layer's."""
    tiled_calls = []
    for name in ("_csr_times_tiles", "_sampled_values_tiles"):
        real = getattr(sparse_ops, name)
        monkeypatch.setattr(sparse_ops, name, lambda *a, _real=real, _name=name: tiled_calls.append(_name) or _real(*a))
    layer = make_layer(60, 40, epsilon=4.0, compute="sparse")
    x = torch.randn(batch, 60, dtype=F64, requires_grad=True)
    grad_out = torch.randn(batch, 40, dtype=F64)
    y = layer(x)
    torch.testing.assert_close(y, dense_reference(layer, x), rtol=0, atol=1e-10)
    (y * grad_out).sum().backward()
    w_dense = layer.to_dense().detach().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    ((x_ref @ w_dense.T) * grad_out).sum().backward()
    conn = layer.connections
    torch.testing.assert_close(layer.weight.grad, w_dense.grad[conn[:, 1], conn[:, 0]], rtol=0, atol=1e-9)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-10)
    assert tiled_calls == ["_csr_times_tiles", "_csr_times_tiles", "_sampled_values_tiles"]
    # a gradient penalty: the differentiable backward goes through the tiled products too
    penalties = []
    for compute in ("sparse", "dense"):
        layer.compute = compute
        layer.weight.grad = None
        (grad_x,) = torch.autograd.grad(torch.tanh(layer(x)).pow(2).sum(), x, create_graph=True)
        grad_x.pow(2).sum().backward()
        penalties.append(layer.weight.grad.clone())
    torch.testing.assert_close(*penalties, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("compute", ["sparse", "native", "dense"])
def test_no_weight_grad_requested(compute):
    layer = make_layer(compute=compute)
    layer.weight.requires_grad_(False)
    x = torch.randn(4, 13, dtype=F64, requires_grad=True)
    layer(x).sum().backward()
    assert layer.weight.grad is None
    torch.testing.assert_close(x.grad, layer.to_dense().sum(0).expand(4, 13), rtol=0, atol=1e-10)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("compute", ["sparse", "native", "dense"])
def test_gradcheck(compute, bias):
    layer = make_layer(compute=compute, bias=bias)
    params = {"weight": layer.weight.detach().clone().requires_grad_()}
    if bias:
        params["bias"] = layer.bias.detach().clone().requires_grad_()
    names = list(params)
    x = torch.randn(3, 13, dtype=F64, requires_grad=True)

    def fn(x, *values):
        return torch.func.functional_call(layer, dict(zip(names, values)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params.values()))


@pytest.mark.parametrize("compute", ["sparse", "native", "dense"])
def test_backward_twice_with_retain_graph(compute):
    layer = make_layer(compute=compute)
    y = layer(torch.randn(4, 13, dtype=F64)).sum()
    y.backward(retain_graph=True)
    first = layer.weight.grad.clone()
    y.backward()
    torch.testing.assert_close(layer.weight.grad, 2 * first, rtol=0, atol=1e-12)


@pytest.mark.parametrize("compute", MODES)
def test_matches_masked_linear(compute):
    layer = make_layer(compute=compute)
    ref = MaskedLinear.from_set_layer(layer)
    conn = layer.connections
    assert ref.mask.sum().item() == layer.n_params
    x = torch.randn(5, 13, dtype=F64)
    x_ref = x.clone().requires_grad_()
    x.requires_grad_()
    g = torch.randn(5, 7, dtype=F64)
    y, y_ref = layer(x), ref(x_ref)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-10)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad[conn[:, 1], conn[:, 0]], rtol=0, atol=1e-10)
    torch.testing.assert_close(layer.bias.grad, ref.bias.grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-10)
    # the masked reference gets no gradient off the mask
    assert torch.all(ref.weight.grad[ref.mask == 0] == 0)


# ---------------------------------------------------------------------------- sizes


def test_n_params_erdos_renyi():
    assert SETLayer(784, 512).n_params == 14256
    assert SETLayer(512, 128).n_params == 7040
    assert sum(p.numel() for p in SparseNet().parameters()) == 23226
    layer = SETLayer(100, 50, epsilon=3)
    assert layer.n_params == int(100 * 50 * (3 * 150 / 5000))
    assert layer.sparsity == pytest.approx(1 - layer.n_params / 5000)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_sparsity_overrides_epsilon(sparsity):
    layer = SETLayer(60, 40, epsilon=11, sparsity=sparsity)
    assert layer.n_params == int(60 * 40 * (1 - sparsity))
    assert layer.weight.shape == (layer.n_params,)
    assert layer.sparsity == sparsity
    assert_unique_pairs(layer)


def test_full_density_uses_every_pair():
    layer = SETLayer(6, 5, sparsity=0.0)
    assert sorted(keys_of(layer).tolist()) == list(range(30))


# ---------------------------------------------------------------------------- attributes


def test_attributes_and_buffers():
    layer = SETLayer(300, 200, epsilon=5)
    n = layer.n_params
    assert n == int(300 * 200 * 5 * 500 / 60000)
    assert layer.weight.shape == (n,) and isinstance(layer.weight, torch.nn.Parameter)
    assert layer.bias.shape == (200,)
    conn = layer.connections
    assert conn.shape == (n, 2) and conn.dtype == torch.int32  # keys fit int32: see connections_dtype
    assert layer.pruned.shape == (n,) and layer.pruned.dtype == torch.bool and not layer.pruned.any()
    assert {name for name, _ in layer.named_buffers()} == {"connections", "pruned"}
    assert set(layer.state_dict()) == {"weight", "bias", "connections", "pruned"}
    assert {name for name, _ in layer.named_parameters()} == {"weight", "bias"}
    assert conn[:, 0].min() >= 0 and conn[:, 0].max() < 300
    assert conn[:, 1].min() >= 0 and conn[:, 1].max() < 200
    assert_unique_pairs(layer)
    assert layer.density == pytest.approx(n / 60000)


def test_no_bias_attribute():
    layer = SETLayer(30, 20, epsilon=2, bias=False)
    assert layer.bias is None
    assert set(layer.state_dict()) == {"weight", "connections", "pruned"}


def test_extra_repr():
    layer = SETLayer(30, 20, epsilon=2)
    text = repr(layer)
    assert "in_features=30" in text
    assert "out_features=20" in text
    assert f"n_params={layer.n_params}" in text


def test_to_dense_places_values():
    layer = make_layer()
    dense = layer.to_dense()
    assert dense.shape == (7, 13)
    conn = layer.connections
    assert torch.equal(dense[conn[:, 1], conn[:, 0]], layer.weight.detach())
    assert int((dense != 0).sum()) == int((layer.weight != 0).sum())


# ---------------------------------------------------------------------------- init


def test_init_statistics():
    torch.manual_seed(1)
    layer = SETLayer(784, 512)
    target = math.sqrt(2 / 784)
    w = layer.weight.detach()
    assert abs(w.std().item() / target - 1) < 0.03
    assert abs(w.mean().item()) < 4 * target / math.sqrt(w.numel())
    torch.manual_seed(1)
    big_bias = SETLayer(100, 20000, epsilon=2).bias.detach()
    assert abs(big_bias.std().item() / math.sqrt(2 / 100) - 1) < 0.05


def test_connections_cover_inputs_uniformly():
    # 20 000 connections over 100 inputs: about 200 per input, none far off
    torch.manual_seed(2)
    layer = SETLayer(100, 400, sparsity=0.5)
    counts = torch.bincount(layer.connections[:, 0], minlength=100).double()
    assert counts.sum() == layer.n_params
    expected = layer.n_params / 100
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 200  # 99 degrees of freedom; the variance is even smaller without replacement


# ---------------------------------------------------------------------------- determinism


def _build_and_evolve(seed=None, generator=None):
    if seed is not None:
        torch.manual_seed(seed)
    layer = SETLayer(50, 40, epsilon=3, generator=generator)
    start = (layer.connections.clone(), layer.weight.detach().clone(), layer.bias.detach().clone())
    layer.evolve_connections()
    layer.evolve_connections()
    return start, (layer.connections.clone(), layer.weight.detach().clone())


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_manual_seed_determinism():
    a_start, a_end = _build_and_evolve(seed=3)
    b_start, b_end = _build_and_evolve(seed=3)
    c_start, c_end = _build_and_evolve(seed=4)
    assert _same(a_start, b_start) and _same(a_end, b_end)
    assert not torch.equal(a_start[0], c_start[0])
    assert not torch.equal(a_start[1], c_start[1])
    assert not torch.equal(a_end[0], c_end[0])


def test_generator_determinism():
    torch.manual_seed(10)
    a_start, a_end = _build_and_evolve(generator=torch.Generator().manual_seed(5))
    torch.manual_seed(11)  # the global seed must not matter
    b_start, b_end = _build_and_evolve(generator=torch.Generator().manual_seed(5))
    c_start, c_end = _build_and_evolve(generator=torch.Generator().manual_seed(6))
    assert _same(a_start, b_start) and _same(a_end, b_end)
    assert not torch.equal(a_start[0], c_start[0])
    assert not torch.equal(a_end[0], c_end[0])


def test_generator_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    layer = SETLayer(50, 40, epsilon=3, generator=torch.Generator().manual_seed(1))
    layer.evolve_connections()
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(in_features=0), "in_features"),
        (dict(in_features=2.5), "in_features"),
        (dict(out_features=-1), "out_features"),
        (dict(zeta=-0.1), "zeta"),
        (dict(zeta=1.5), "zeta"),
        (dict(epsilon=0), "epsilon"),
        (dict(epsilon=-1), "epsilon"),
        (dict(sparsity=1.0), "sparsity"),
        (dict(sparsity=-0.1), "sparsity"),
        (dict(epsilon=100), r"epsilon=100 asks for 800 connections .* only 16 pairs"),
        (dict(epsilon=0.01), "epsilon=0.01 gives no connection"),
        (dict(compute="foo"), "compute"),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(f"{k}={v[k]}" for k in v),
)
def test_bad_arguments(kwargs, match):
    args = dict(in_features=4, out_features=4, epsilon=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SETLayer(**args)


def test_dense_compute_refused_for_huge_layer():
    with pytest.raises(ValueError, match="compute='dense'"):
        SETLayer(10_000, 10_000, epsilon=1, compute="dense")


# ---------------------------------------------------------------------------- state


def _trained_layer(compute="sparse"):
    layer = make_layer(40, 30, seed=7, compute=compute)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(8, 40, dtype=F64)).pow(2).mean().backward()
        opt.step()
    layer.evolve_connections(optimizer=opt)
    layer.zero_connections()  # leaves a non-trivial `pruned` mask
    assert layer.pruned.any()
    return layer


def _assert_same_layer(a: SETLayer, b: SETLayer):
    for name in ("connections", "pruned", "weight", "bias"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("compute", ["sparse", "native", "dense"])
def test_state_dict_round_trip(compute):
    layer = _trained_layer(compute)
    fresh = make_layer(40, 30, seed=99, compute=compute)
    assert not torch.equal(fresh.connections, layer.connections)
    x = torch.randn(5, 40, dtype=F64)
    fresh(x)  # caches the index of fresh's own connections
    fresh.load_state_dict(layer.state_dict())
    _assert_same_layer(layer, fresh)
    torch.testing.assert_close(fresh(x), layer(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(fresh(x), dense_reference(layer, x), rtol=0, atol=1e-10)
    # the loaded layer keeps working: evolution follows the loaded mask
    moved = fresh.evolve_connections()
    assert moved.numel() == int(layer.pruned.sum())
    assert_unique_pairs(fresh)


def test_torch_save_load_round_trip():
    layer = _trained_layer()
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = make_layer(40, 30, seed=123, compute="sparse")
    x = torch.randn(5, 40, dtype=F64)
    fresh(x)
    fresh.load_state_dict(state)
    _assert_same_layer(layer, fresh)
    torch.testing.assert_close(fresh(x), layer(x), rtol=0, atol=1e-12)


def test_whole_module_save_load():
    layer = _trained_layer()
    x = torch.randn(5, 40, dtype=F64)
    expected = layer(x)
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    _assert_same_layer(layer, loaded)
    torch.testing.assert_close(loaded(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("compute", MODES)
def test_forward_after_evolution_uses_new_connections(compute):
    layer = make_layer(40, 30, compute=compute)
    x = torch.randn(5, 40, dtype=F64)
    layer(x)  # builds the index
    for _ in range(3):
        before = layer.connections.clone()
        layer.evolve_connections()
        assert not torch.equal(before, layer.connections)
        torch.testing.assert_close(layer(x), dense_reference(layer, x), rtol=0, atol=1e-10)


def test_manual_connection_edit_invalidates_index():
    layer = make_layer(40, 30, compute="sparse")
    x = torch.randn(5, 40, dtype=F64)
    layer(x)
    with torch.no_grad():
        # a bijection of the pairs: connections stay unique but move
        layer.connections[:, 1] = (layer.connections[:, 1] + 1) % 30
    assert_unique_pairs(layer)
    torch.testing.assert_close(layer(x), dense_reference(layer, x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("convert", ["to", "double"])
@pytest.mark.parametrize("compute", ["sparse", "native", "dense"])
def test_dtype_conversion(compute, convert):
    layer = make_layer(40, 30, dtype=torch.float32, compute=compute)
    x32 = torch.randn(5, 40)
    y32 = layer(x32)
    layer = layer.to(F64) if convert == "to" else layer.double()
    assert layer.weight.dtype == F64 and layer.bias.dtype == F64
    assert layer.connections.dtype == torch.int32  # integer buffers keep their dtype
    x = x32.double()
    y = layer(x)
    assert y.dtype == F64
    torch.testing.assert_close(y, dense_reference(layer, x), rtol=0, atol=1e-10)
    torch.testing.assert_close(y.float(), y32, rtol=1e-5, atol=1e-5)
    layer.evolve_connections()
    assert layer.weight.dtype == F64
    torch.testing.assert_close(layer(x), dense_reference(layer, x), rtol=0, atol=1e-10)


def test_float32_default_dtype_matches_dense():
    torch.manual_seed(0)
    layer = SETLayer(64, 32, epsilon=3)
    assert layer.weight.dtype == torch.float32
    x = torch.randn(7, 64)
    torch.testing.assert_close(layer(x), dense_reference(layer, x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- truly sparse


@pytest.mark.slow
def test_huge_layer_is_truly_sparse():
    torch.manual_seed(0)
    n = 100_000
    layer = SETLayer(n, n, epsilon=20)
    assert layer.n_params == 4_000_000
    assert not layer.uses_dense_kernels()
    x = torch.randn(128, n)
    y = layer(x)
    assert y.shape == (128, n)
    y.sum().backward()
    assert layer.weight.grad.shape == (layer.n_params,)
    opt = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
    opt.step()
    before = layer.connections.clone()
    moved = layer.evolve_connections(optimizer=opt)
    assert moved.numel() > 0.25 * layer.n_params
    assert layer.weight.shape == (4_000_000,)
    tensors = [*layer.parameters(), *layer.buffers(), layer.weight.grad, opt.state[layer.weight]["momentum_buffer"]]
    assert max(t.numel() for t in tensors) <= 2 * layer.n_params
    assert_unique_pairs(layer)
    kept = torch.ones(layer.n_params, dtype=torch.bool)
    kept[moved] = False
    assert torch.equal(layer.connections[kept], before[kept])
    assert torch.all(opt.state[layer.weight]["momentum_buffer"][moved] == 0)
    # a few output columns still agree with the dense computation of those rows
    rows = torch.tensor([0, 17, n - 1])
    y = layer(x[:2])
    for r in rows.tolist():
        sel = layer.connections[:, 1] == r
        ref = x[:2, layer.connections[sel, 0]] @ layer.weight.detach()[sel] + layer.bias.detach()[r]
        torch.testing.assert_close(y[:, r].detach(), ref, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------- CUDA

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("compute", ["sparse", "dense", "auto"])
def test_cuda_forward_and_gradients_match_dense(compute, bias):
    torch.manual_seed(0)
    layer = SETLayer(60, 40, epsilon=3, bias=bias, dtype=F64, device="cuda", compute=compute)
    assert layer.connections.device.type == "cuda"
    conn = layer.connections
    x = torch.randn(2, 5, 60, dtype=F64, device="cuda", requires_grad=True)
    g = torch.randn(2, 5, 40, dtype=F64, device="cuda")
    y = layer(x)
    torch.testing.assert_close(y, dense_reference(layer, x.detach()), rtol=0, atol=1e-10)
    (y * g).sum().backward()
    w_dense = layer.to_dense().detach().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    ((x_ref @ w_dense.T) * g).sum().backward()
    torch.testing.assert_close(layer.weight.grad, w_dense.grad[conn[:, 1], conn[:, 0]], rtol=0, atol=1e-10)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-10)


@cuda
def test_cuda_module_to_device_matches_cpu():
    layer = make_layer(60, 40, compute="sparse")
    x = torch.randn(5, 60, dtype=F64)
    expected = layer(x)
    layer = layer.cuda()
    torch.testing.assert_close(layer(x.cuda()).cpu(), expected, rtol=0, atol=1e-10)


@cuda
@pytest.mark.parametrize("generator_device", [None, "cpu", "cuda"])
def test_cuda_evolve(generator_device):
    generator = None if generator_device is None else torch.Generator(generator_device).manual_seed(0)
    torch.manual_seed(0)
    layer = SETLayer(300, 200, epsilon=5, device="cuda", generator=generator, compute="sparse")
    x = torch.randn(4, 300, device="cuda")
    opt = torch.optim.Adam(layer.parameters())
    layer(x).sum().backward()
    opt.step()
    before = layer.connections.clone()
    moved = layer.evolve_connections(optimizer=opt)
    assert moved.device.type == "cuda" and moved.numel() > 0
    assert layer.connections.device.type == "cuda" and layer.weight.device.type == "cuda"
    assert not torch.equal(before, layer.connections)
    assert_unique_pairs(layer)
    assert torch.all(opt.state[layer.weight]["exp_avg"][moved] == 0)
    torch.testing.assert_close(layer(x), dense_reference(layer, x), rtol=1e-5, atol=1e-5)


@cuda
@pytest.mark.slow
def test_cuda_huge_layer():
    torch.manual_seed(0)
    layer = SETLayer(100_000, 100_000, epsilon=20, device="cuda")
    x = torch.randn(128, 100_000, device="cuda")
    layer(x).sum().backward()
    layer.evolve_connections()
    assert_unique_pairs(layer)


# ---------------------------------------------------------------------------- misuse
@pytest.mark.parametrize("compute", MODES)
def test_gradgradcheck(compute):
    # Second-order gradients (gradient penalties, Hessian-vector products) must be exact on
    # every path: the sparse backward is itself differentiable.
    torch.manual_seed(0)
    layer = SETLayer(12, 7, epsilon=1, compute=compute, dtype=F64)
    x = torch.randn(5, 12, dtype=F64, requires_grad=True)

    def fn(x, weight, bias):
        return torch.func.functional_call(layer, {"weight": weight, "bias": bias}, (x,))

    assert torch.autograd.gradgradcheck(fn, (x, layer.weight, layer.bias))


def _gradient_penalty(compute: str) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(1)
    first, second = (
        SETLayer(30, 20, epsilon=3, compute=compute, dtype=F64),
        SETLayer(20, 10, epsilon=3, compute=compute, dtype=F64),
    )
    x = torch.randn(8, 30, dtype=F64, requires_grad=True)
    (grad_x,) = torch.autograd.grad(second(torch.tanh(first(x))).pow(2).sum(), x, create_graph=True)
    penalty = grad_x.pow(2).sum()
    penalty.backward()
    return penalty.detach(), first.weight.grad, second.weight.grad, first.bias.grad


@pytest.mark.parametrize("compute", ["sparse", "native"])
def test_gradient_penalty_through_stacked_layers_matches_dense_path(compute):
    for sparse, dense in zip(_gradient_penalty(compute), _gradient_penalty("dense")):
        torch.testing.assert_close(sparse, dense, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((True, 200), {}, "in_features must be a positive integer, got True"),
        ((10, 20.0), {}, "out_features must be a positive integer"),
        ((10, 20), dict(epsilon=math.inf), "epsilon must be a finite number"),
        ((10, 20), dict(epsilon=math.nan), "epsilon must be a finite number"),
        ((2**32, 2**32), {}, "more than 2\\*\\*62 pairs"),
        ((10, 20), dict(dtype=torch.float16), "supports dtype float32 and float64, got torch.float16"),
        ((10, 20), dict(dtype=torch.bfloat16), "supports dtype float32 and float64"),
        ((10, 20), dict(device="meta"), "meta device"),
    ],
)
def test_bad_construction_is_refused(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SETLayer(*args, **kwargs)


def test_numpy_integers_are_accepted_like_nn_linear():
    np = pytest.importorskip("numpy")
    layer = SETLayer(np.int64(10), np.int32(20), epsilon=2)
    assert (layer.in_features, layer.out_features) == (10, 20) and type(layer.in_features) is int


def test_meta_device_context_is_refused():
    with torch.device("meta"), pytest.raises(ValueError, match="meta device"):
        SETLayer(10, 20)


def test_half_precision_after_construction_is_refused_at_conversion():
    layer = make_layer(dtype=torch.float32)
    with pytest.raises(ValueError, match="cannot be converted to torch.float16: it supports dtype float32 and float64"):
        layer.half()
    assert layer.weight.dtype == torch.float32  # refused before anything converted


def test_scalar_input_is_refused():
    with pytest.raises(ValueError, match=r"expected input of shape \(\*, 13\)"):
        make_layer()(torch.tensor(1.0, dtype=F64))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c.__setitem__((0, 0), 5000), r"has an input index outside \[0, 13\)"),
        (lambda c: c.__setitem__((0, 1), -1), r"has an output index outside \[0, 7\)"),
        (lambda c: c.__setitem__(1, c[0].clone()), "appears twice"),
    ],
    ids=["input_out_of_range", "negative_output", "duplicate"],
)
def test_load_state_dict_refuses_bad_connections(edit, match):
    layer = make_layer()
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    edit(state["connections"])
    with pytest.raises(RuntimeError, match=match):
        make_layer(seed=1).load_state_dict(state)


def test_load_state_dict_refuses_wrong_shape_and_dtype():
    layer = make_layer()
    state = layer.state_dict()
    with pytest.raises(RuntimeError, match=r"expected shape \(40, 2\), got \(5, 2\)"):
        make_layer().load_state_dict({**state, "connections": state["connections"][:5]})
    with pytest.raises(RuntimeError, match="expected an integer dtype"):
        make_layer().load_state_dict({**state, "connections": state["connections"].double()})


def test_the_default_compute_choice_never_times_anything():
    # a fresh process, timing made to fail: the default layer, its forward under no_grad
    # (an evaluation) and a training step all run, by rule
    import subprocess
    import sys

    script = """
import torch
from synapses import SETLayer, dispatch

def no_timing(*args, **kwargs):
    raise AssertionError("timed")

dispatch._fastest_steps = no_timing
layer = SETLayer(784, 512)
with torch.no_grad():
    layer(torch.randn(10000, 784))
layer(torch.randn(128, 784)).sum().backward()
print(layer.kernel_for(128))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("native", "sparse")


@pytest.mark.parametrize("compute", ["sparse", "native", "dense"])
def test_bfloat16_autocast_gradients_match_float64(compute):
    """Under CPU bfloat16 autocast a SETLayer takes a bfloat16 input, computes in its own
    float32 and returns float32: its values' and bias's gradients match a float64 computation
    on the same (bfloat16-rounded) input to float32 rounding (rtol 1e-5); the input's
    gradient comes back in bfloat16, to bfloat16 rounding (rtol 2**-8); the backward pass
    runs outside the autocast region, as torch recommends (inside it, the sparse and compiled
    paths still compute in float32; the dense path's matrix products are lowered by autocast,
    as nn.Linear's are). In a SET-MLP whose
    dense head autocast lowers to bfloat16, the values' gradient is within 3% (relative norm)
    of float64's: the head's rounding, not the layer's."""
    import copy

    torch.manual_seed(0)
    layer = SETLayer(24, 16, epsilon=3, compute=compute)
    head = torch.nn.Linear(16, 5)
    x = torch.randn(8, 24).bfloat16().requires_grad_()
    target = torch.randint(0, 5, (8,))
    probe = torch.randn(8, 16)

    layer64 = copy.deepcopy(layer).double()
    x64 = x.detach().double().requires_grad_()
    (layer64(x64) * probe.double()).sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
        assert y.dtype == torch.float32
    (y * probe).sum().backward()  # outside the autocast region, as torch recommends
    torch.testing.assert_close(layer.weight.grad.double(), layer64.weight.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.bias.grad.double(), layer64.bias.grad, rtol=1e-5, atol=1e-6)
    assert x.grad.dtype == torch.bfloat16
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=2**-8, atol=1e-2)

    layer.zero_grad()
    layer64.zero_grad()
    head64 = copy.deepcopy(head).double()
    torch.nn.functional.cross_entropy(head64(torch.relu(layer64(x64))), target).backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(torch.relu(layer(x)))
        assert logits.dtype == torch.bfloat16  # the dense head does run in bfloat16
        loss = torch.nn.functional.cross_entropy(logits, target)
    loss.backward()
    error = (layer.weight.grad.double() - layer64.weight.grad).norm() / layer64.weight.grad.norm()
    assert layer.weight.grad.dtype == torch.float32 and 0 < error < 0.03


@pytest.mark.parametrize("compute", ["sparse", "native"])
def test_a_backward_pass_inside_autocast_still_computes_the_sparse_paths_in_float32(compute):
    torch.manual_seed(0)
    layer = SETLayer(24, 16, epsilon=3, compute=compute)
    x = torch.randn(8, 24)
    layer(x).square().sum().backward()
    expected = layer.weight.grad.clone()
    layer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x).square().sum().backward()  # torch's CSR kernels have no bfloat16: this raised before
    assert torch.equal(layer.weight.grad, expected)


def _mnist_set_mlp_accuracy(mnist, seed: int, bf16: bool, n_train: int = 10_000, epochs: int = 5) -> float:
    """Test accuracy (%) of a SET-MLP 784-512-512-10 (epsilon 20, dense head) trained on the
    first ``n_train`` MNIST images, SGD lr 0.01 momentum 0.9, batch 64, an evolution per
    epoch, with or without CPU bfloat16 autocast (training and evaluation)."""
    from torch import nn

    import synapses

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    model = synapses.sparsify(model, epsilon=20, verbose=False)
    for layer in model.modules():
        if isinstance(layer, SETLayer):
            layer.compute = "fixed"  # the same path on every machine
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch, x, y = 64, mnist.train_x[:n_train], mnist.train_y[:n_train]
    evolution = synapses.Evolution(model, optimizer, every=n_train // batch, seed=seed)
    for epoch in range(epochs):
        order = torch.randperm(n_train, generator=torch.Generator().manual_seed(epoch))
        for step in range(n_train // batch):
            rows = order[step * batch : (step + 1) * batch]
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
            loss.backward()
            optimizer.step()
            evolution.step()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return float((model(mnist.test_x).argmax(1) == mnist.test_y).double().mean()) * 100


@pytest.mark.slow
def test_mnist_set_mlp_under_bfloat16_autocast_is_within_0_3_points_of_float32(mnist):
    """5 epochs on 10,000 MNIST images (a subset, for time: about a minute for the six
    runs), tested on all 10,000 test images, three seeds each way. The criterion is on the
    mean over the seeds: one seed's difference is training noise as much as rounding (the
    dense head's bfloat16 moves the weights, pruning then picks other connections, and the
    two runs part), as large as the spread between float32 seeds themselves."""
    torch.set_num_threads(1)
    float32 = [_mnist_set_mlp_accuracy(mnist, seed, bf16=False) for seed in range(3)]
    bfloat16 = [_mnist_set_mlp_accuracy(mnist, seed, bf16=True) for seed in range(3)]
    print(f"float32 {float32}, bfloat16 {bfloat16}")
    assert min(float32) > 85  # it learned
    assert abs(sum(bfloat16) / 3 - sum(float32) / 3) <= 0.3


def test_connections_are_int32_exactly_while_every_flat_key_fits_int32():
    from synapses import connections_dtype

    assert connections_dtype(2**16, 2**15) == torch.int32  # 2**31 pairs: the last key is 2**31 - 1
    assert connections_dtype(2**16 + 1, 2**15) == torch.int64  # the last key is 2**31 + 2**15 - 1
    assert connections_dtype(2**31 + 7, 1) == torch.int64
    assert SETLayer(300, 200).connections.dtype == torch.int32
    big = SETLayer(2**16 + 1, 2**15, epsilon=1, generator=torch.Generator().manual_seed(0))
    assert big.connections.dtype == torch.int64
    assert_unique_pairs(big)


def test_connection_keys_are_exact_int64_keys_in_slot_order_for_both_connection_dtypes():
    for layer in (
        SETLayer(300, 200),
        SETLayer(2**16 + 1, 2**15, epsilon=1, generator=torch.Generator().manual_seed(0)),
    ):
        keys = layer.connection_keys()
        assert keys.dtype == torch.int64 and keys.shape == (layer.n_params,)
        inputs, outputs = layer.connections[:, 0].tolist(), layer.connections[:, 1].tolist()
        assert keys.tolist() == [o * layer.in_features + i for i, o in zip(inputs, outputs)]  # Python ints: exact


def test_an_int64_state_dict_loads_into_int32_connections_and_the_layer_goes_on_identically():
    """Checkpoints written before the buffer became int32 hold int64 connections."""
    source = SETLayer(50, 40, epsilon=4, generator=torch.Generator().manual_seed(1))
    state = {k: v.clone() for k, v in source.state_dict().items()}
    state["connections"] = state["connections"].to(torch.int64)
    target = SETLayer(50, 40, epsilon=4, generator=torch.Generator().manual_seed(2))
    target.load_state_dict(state)
    assert target.connections.dtype == torch.int32
    assert torch.equal(target.connections, source.connections)
    x = torch.randn(6, 50)
    for layer in (source, target):
        layer.generator = torch.Generator().manual_seed(3)
        layer.evolve_connections()
    assert torch.equal(target.connections, source.connections)
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)
