"""The measurement behind compute="auto": what it times, how it reads a crossing, and that
the library's thresholds and docs/performance.md are the committed measurement's."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from synapses import dispatch
from synapses_study.bench import auto_rule
from synapses_study.bench.auto_rule import Crossing, from_json, measure, render, to_json
from synapses_study.bench.docs_blocks import read_block

ROOT = Path(__file__).resolve().parents[2]
MEASURED = ROOT / "docs" / "benchmarks" / "auto_rule.json"


def test_dense_starts_where_it_wins_at_every_higher_density():
    assert Crossing(8, 8, 4, 1, ((0.1, 0.5), (0.2, 1.2), (0.3, 0.9), (0.4, 1.1), (0.5, 1.3))).dense_from == 0.4
    assert Crossing(8, 8, 4, 1, ((0.1, 0.5), (0.5, 0.9))).dense_from is None
    assert Crossing(8, 8, 4, 1, ((0.1, 1.5), (0.5, 2.0))).dense_from == 0.1


def test_a_measurement_times_both_paths_and_round_trips_through_json():
    before = torch.get_num_threads()
    crossings = measure(shapes=((40, 30, 8),), densities=(0.2, 0.6), threads=(1,), repeats=3)
    assert torch.get_num_threads() == before
    assert [d for d, _ in crossings[0].ratios] == [0.2, 0.6] and all(r > 0 for _, r in crossings[0].ratios)
    assert from_json(json.loads(json.dumps(to_json(crossings, "cmd")))) == crossings


def test_a_file_that_is_not_a_measurement_is_refused_in_one_line(tmp_path, capsys):
    bad = tmp_path / "rule.json"
    bad.write_text("{}")
    assert auto_rule.main(["--from-json", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_rule_reads_the_shapes_together():
    a = Crossing(8, 8, 4, 2, ((0.3, 0.5), (0.4, 0.8), (0.5, 2.0)))
    b = Crossing(9, 9, 4, 2, ((0.3, 0.5), (0.4, 1.5), (0.5, 0.9)))
    assert auto_rule.dense_from_over_shapes([a, b], 2) == 0.4  # means 0.5, 1.10, 1.34


def test_the_library_thresholds_are_the_committed_measurements():
    crossings = from_json(json.loads(MEASURED.read_text()))
    for threads, threshold in dispatch.AUTO_DENSE_MIN_DENSITY.items():
        measured = auto_rule.dense_from_over_shapes(crossings, threads)
        assert threshold == (1.0 if measured is None else measured)


def test_docs_performance_carries_what_the_committed_measurement_renders_to():
    assert read_block(ROOT / "docs" / "performance.md", auto_rule.BLOCK) == render(json.loads(MEASURED.read_text()))
