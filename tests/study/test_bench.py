"""synapses_study.bench.kernels: structure of the results (tiny repeats) and the masked reference net."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
import torch.nn.functional as F

from synapses import MaskedLinear, SETLayer, SparseNet
from synapses_study.bench import kernels as bench
from synapses_study.bench.kernels import Comparison, bench_evolution, format_table, masked_copy, time_ms

CPU = torch.device("cpu")


def test_time_ms_counts_calls():
    calls = []
    times = time_ms(lambda: calls.append(1), repeats=4, device=CPU, warmup=2)
    assert len(times) == 4 and len(calls) == 6
    assert all(t >= 0 for t in times)


def test_bench_evolution_structure():
    results = bench_evolution(repeats=3, device=CPU)
    assert [r.name for r in results] == ["evolve_connections(), 784x512", "construction, 784x512"]
    assert [r.baseline_ms for r in results] == [300.0, 450.0]
    for r in results:
        assert isinstance(r, Comparison)
        assert r.ours_ms > 0
        assert r.speedup == pytest.approx(r.baseline_ms / r.ours_ms)


def test_format_table():
    results = [
        Comparison("first", 2.0, 10.0, "ref A", "speedup >= 2"),
        Comparison("second", 4.0, 1.0, "ref B", "< 5 ms"),
    ]
    lines = format_table(results).splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:3] == ["benchmark", "ours", "ms"]
    assert lines[1].split()[:4] == ["first", "2.000", "10.000", "5.0x"]
    assert lines[1].endswith("speedup >= 2  (ref A)")
    assert lines[2].split()[:4] == ["second", "4.000", "1.000", "0.2x"]


def test_main_writes_json(monkeypatch, tmp_path, capsys):
    fake = [Comparison("x", 1.0, 3.0, "b", "t")]
    monkeypatch.setattr(bench, "run_all", lambda repeats, device, quick=False, epochs=True, shapes=True: fake)
    path = tmp_path / "out.json"
    bench.main(["--repeats", "1", "--json", str(path)])
    assert "x" in capsys.readouterr().out
    data = json.loads(path.read_text())
    assert data == [{"name": "x", "ours_ms": 1.0, "baseline_ms": 3.0, "baseline": "b", "target": "t", "speedup": 3.0}]


@pytest.mark.parametrize("sizes, epsilon", [((784, 512, 128, 10), 11), ((20, 16, 12, 3), 2)], ids=["mnist", "small"])
def test_masked_copy_equivalent_in_float64(sizes, epsilon):
    torch.manual_seed(0)
    net = SparseNet(sizes, epsilon=epsilon).double()
    net.evolve_connections()  # not the construction-time topology
    ref = masked_copy(net)
    assert all(isinstance(m, MaskedLinear) for m in ref.set_layers)
    assert all(p.dtype == torch.float64 for p in ref.parameters())
    x = torch.randn(6, sizes[0], dtype=torch.float64)
    y = torch.randint(sizes[-1], (6,))
    out, out_ref = net(x), ref(x)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-10)
    F.nll_loss(out, y).backward()
    F.nll_loss(out_ref, y).backward()
    for layer, dense in zip(net.set_layers, ref.set_layers):
        conn = layer.connections
        torch.testing.assert_close(layer.weight.grad, dense.weight.grad[conn[:, 1], conn[:, 0]], rtol=0, atol=1e-10)
        torch.testing.assert_close(layer.bias.grad, dense.bias.grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(net.readout.weight.grad, ref.readout.weight.grad, rtol=0, atol=1e-10)


def test_masked_copy_is_independent():
    torch.manual_seed(0)
    net = SparseNet((20, 16, 12, 3), epsilon=2)
    ref = masked_copy(net)
    with torch.no_grad():
        ref.readout.weight.zero_()
        ref.set_layers[0].weight.zero_()
    assert net.readout.weight.abs().sum() > 0
    assert net.set_layers[0].weight.abs().sum() > 0


def test_sparseprop_shapes_compare_the_same_weights(monkeypatch):
    # quick sizes; the structure and the equivalence of the two sides, not the timings
    from synapses_study.bench.kernels import SPARSEPROP_SHAPES, SPARSITIES, bench_linear_shapes

    threads = torch.get_num_threads()
    for peer in ("sparseprop_linear", "sparselab_linear"):  # as where no peer is installed
        monkeypatch.setattr(bench, peer, lambda dense: None)
    results = bench_linear_shapes(1, torch.device("cpu"), quick=True)
    assert torch.get_num_threads() == threads  # measured at one thread, then restored
    assert len(results) == len(SPARSEPROP_SHAPES) * len(SPARSITIES) == 6
    assert results[0].name == "768->3072, batch 256, 98% sparse" and results[0].target.startswith(
        "SparseProp 0.18 of dense (as reported), ours "
    )
    assert all(
        r.baseline == "dense nn.Linear, 1 thread"
        and re.search(r"\((dense|sparse|native) kernels\)$", r.target)
        and r.ours_ms > 0
        and r.baseline_ms > 0
        for r in results
    )


def test_installed_peers_are_timed_alongside_on_the_same_weights(monkeypatch):
    # Stand-ins for the peers' layers (copies of the dense one) take their places in the
    # rounds; the line then reports each one's measured fraction of dense and ours of it.
    peers = []

    def stand_in(dense):
        peer = copy.deepcopy(dense)
        peers.append((peer, dense.weight.detach().clone()))
        return peer

    monkeypatch.setattr(bench, "sparseprop_linear", stand_in)
    monkeypatch.setattr(bench, "sparselab_linear", stand_in)
    results = bench.bench_linear_shapes(1, torch.device("cpu"), quick=True)
    assert len(peers) == 2 * 6
    for peer, weight in peers:  # each peer got the SETLayer's weights, zeros included
        assert torch.equal(peer.weight, weight) and (weight == 0).float().mean() >= 0.89
    fraction = r"\d+\.\d\d of dense \(ours takes \d+\.\d\d of its time\)"
    assert all(
        re.fullmatch(
            rf"timed alongside: SparseProp {fraction}, SparseLab {fraction}; ours \d+\.\d\d of dense "
            r"\((dense|sparse|native) kernels\)",
            r.target,
        )
        for r in results
    ), results[0].target


@pytest.mark.parametrize("name", ["sparseprop", "sparselab"])
def test_each_peer_where_installed_computes_what_dense_does(name):
    pytest.importorskip(name, reason=f"{name} is an optional peer for the benchmark")
    torch.manual_seed(0)
    layer = SETLayer(48, 32, sparsity=0.9)
    dense = torch.nn.Linear(48, 32)
    with torch.no_grad():
        dense.weight.copy_(layer.to_dense())
    peer = getattr(bench, f"{name}_linear")(dense)
    x = torch.randn(16, 48, requires_grad=True)
    torch.testing.assert_close(peer(x), dense(x), rtol=1e-5, atol=1e-5)
    (grad_peer,) = torch.autograd.grad(peer(x).pow(2).sum(), x)
    (grad_dense,) = torch.autograd.grad(dense(x).pow(2).sum(), x)
    torch.testing.assert_close(grad_peer, grad_dense, rtol=1e-5, atol=1e-5)


def test_scale_run_counts_connections_and_extrapolates_the_epoch(tmp_path):
    from synapses.layer import erdos_renyi_n_params

    out = tmp_path / "scale.json"
    bench.main(["--scale", "--hidden", "300", "--layers", "2", "--steps", "3", "--json", str(out)])
    result = json.loads(out.read_text())
    expected = erdos_renyi_n_params(784, 300, 20, None) + erdos_renyi_n_params(300, 300, 20, None) + 300 * 10
    assert result["connections"] == expected
    assert result["steps_timed"] == 3 and not result["epoch_measured"]
    assert result["epoch_s"] == pytest.approx(result["step_ms"] / 1e3 * 469)
    assert result["evolution_ms"] > 0 and result["peak_memory_gib"] > 0
