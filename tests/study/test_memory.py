"""The memory measurement: what it trains and counts, and its refusals."""

from __future__ import annotations

import pytest

from synapses import SETLayer
from synapses_study.bench import memory
from synapses_study.bench.memory import Spec, halved, measure


def test_a_measurement_counts_the_connections_it_trained_in_a_fresh_process():
    spec = Spec(input=96, width=64, layers=2, sparsity=0.5, batch=4, steps=1)
    found = measure(spec)
    assert found.connections == SETLayer(96, 64, sparsity=0.5).n_params + SETLayer(64, 64, sparsity=0.5).n_params
    assert found.parameter_bytes == 4 * (found.connections + 2 * 64)  # float32 weights and biases
    assert found.peak_bytes > 0
    n, biases = found.connections, 4 * 2 * 64
    # at density 0.5 these layers take the dense path, which builds no CSR index
    assert found.live_bytes == {
        "weight": 4 * n,
        "bias": biases,
        "gradients": 4 * n + biases,
        "connections": 8 * n,  # int32: every key of these layers fits
        "pruned": n,
        "index": 0,
        "momentum": 4 * n + biases,
    }


def test_the_second_measurement_halves_the_density_and_keeps_widths_and_batch():
    assert halved(Spec(sparsity=0.9)) == Spec(sparsity=0.95)
    assert halved(Spec(sparsity=None, epsilon=20)) == Spec(sparsity=None, epsilon=10)


@pytest.mark.parametrize("argument", ["--layers", "--batch", "--width"])
def test_a_size_below_one_is_refused_in_one_line(argument, capsys):
    assert memory.main([argument, "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and argument in err


def test_docs_performance_carries_what_the_committed_measurements_render_to():
    import json
    from pathlib import Path

    from synapses_study.bench.docs_blocks import read_block

    docs = Path(__file__).resolve().parents[2] / "docs"
    files = [json.loads((docs / "benchmarks" / name).read_text()) for name in ("memory_4096.json", "memory_1m.json")]
    assert read_block(docs / "performance.md", memory.BLOCK) == memory.render(files)
