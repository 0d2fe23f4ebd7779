"""docs/performance.md's scale block is what the committed --scale result renders to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synapses_study.bench import scale
from synapses_study.bench.docs_blocks import read_block

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_docs_performance_carries_what_the_committed_scale_result_renders_to():
    files = [json.loads((DOCS / "benchmarks" / f"scale_{size}.json").read_text()) for size in ("1m", "4m", "6m")]
    assert read_block(DOCS / "performance.md", scale.BLOCK) == scale.render(files)
    assert "| 4 x 250,000 | 37,515,680 | native, native, native, native | 1 |" in scale.render(files[:1])


def test_a_file_that_is_not_a_scale_result_is_refused_in_one_line(tmp_path, capsys):
    bad = tmp_path / "scale.json"
    bad.write_text(json.dumps({"hidden": 1}))
    assert scale.main(["--from-json", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(ValueError, match="not a scale result file"):
        scale.render([{"hidden": 1}])
