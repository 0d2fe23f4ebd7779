"""The performance grid: what it measures, how it renders, and that docs/performance.md
carries exactly what its committed measurement file renders to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from synapses_study.bench import peer_grid
from synapses_study.bench.docs_blocks import read_block
from synapses_study.bench.peer_grid import GridPoint, from_json, measure_point, render, to_json, write_docs

ROOT = Path(__file__).resolve().parents[2]
PERFORMANCE = ROOT / "docs" / "performance.md"
MEASURED = ROOT / "docs" / "benchmarks" / "peer_grid.json"


def _data(points: list[GridPoint]) -> dict:
    return {
        "command": "python -m synapses_study.bench.peer_grid --repeats 100",
        "environment": {"torch": "2.x", "processor": "a CPU", "cores": 2, "sparseprop": "0.1.14", "sparselab": None},
        "points": [p.__dict__ for p in points],
    }


def test_a_point_times_ours_dense_and_the_peers_in_both_modes_and_gives_the_thread_count_back():
    before = torch.get_num_threads()
    points = measure_point(64, 32, 16, 0.9, threads=1, repeats=3)
    assert torch.get_num_threads() == before
    assert [p.mode for p in points] == list(peer_grid.MODES)
    for point in points:
        assert {"ours", "dense"} <= set(point.ms) and all(ms > 0 for ms in point.ms.values())
        assert point.path in ("dense", "sparse", "native") and point.threads == 1 and point.calls == 3
    assert from_json(json.loads(json.dumps(to_json(points, "cmd")))) == points


def test_the_tables_bold_exactly_the_ratios_over_the_target_and_count_them():
    slow = GridPoint(
        512, 256, 128, 0.9, 1, "forward+backward", "native", {"ours": 0.9, "dense": 2.0, "SparseProp": 1.0}, 40
    )
    fast = GridPoint(512, 256, 128, 0.9, 1, "forward", "native", {"ours": 0.5, "dense": 1.0, "SparseProp": 1.0}, 40)
    text = render(_data([slow, fast]))
    assert "| 512 -> 256, 128 | 90% | 1 | 40 | 0.9 (native) | 2 | 1 | **0.90** |" in text  # 0.9 > 0.8
    assert "| 512 -> 256, 128 | 90% | 1 | 40 | 0.5 (native) | 1 | 1 | 0.50 |" in text  # 0.5 <= 1.0
    assert "Ratios over the target (bold): 1 of 2." in text
    assert "SparseLab not installed" in text and "SparseLab |" not in text


def test_a_file_that_is_not_a_measurement_is_refused_in_one_line(tmp_path, capsys):
    bad = tmp_path / "grid.json"
    bad.write_text(json.dumps({"points": [{"n_in": 1}]}))
    assert peer_grid.main(["--from-json", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_docs_are_filled_between_the_markers_only(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("before\n<!-- peer-grid -->\nold\n<!-- /peer-grid -->\nafter\n")
    point = GridPoint(64, 32, 16, 0.9, 1, "forward", "dense", {"ours": 1.0, "dense": 1.0})
    write_docs(page, _data([point]))
    text = page.read_text()
    assert text.startswith("before\n<!-- peer-grid -->\n") and text.endswith("<!-- /peer-grid -->\nafter\n")
    assert "\nold\n" not in text and "| 64 -> 32, 16 | 90% | 1 | – | 1 (dense) | 1 |" in text
    (tmp_path / "none.md").write_text("no block\n")
    with pytest.raises(ValueError, match="no <!-- peer-grid --> ... <!-- /peer-grid --> block"):
        write_docs(tmp_path / "none.md", _data([point]))


def test_docs_performance_carries_what_the_committed_measurement_renders_to():
    assert read_block(PERFORMANCE, peer_grid.BLOCK) == render(json.loads(MEASURED.read_text()))
