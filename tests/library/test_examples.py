"""The example for your own model runs end to end (smoke settings) and learns."""

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.end_to_end

EXAMPLE = Path(__file__).parents[2] / "examples" / "your_model.py"


def test_your_model_example_trains_both_models(capsys, caplog):
    spec = importlib.util.spec_from_file_location("your_model", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with caplog.at_level("INFO", logger="synapses"):
        results = example.main(
            [
                "--epochs",
                "2",
                "--train-size",
                "3000",
                "--test-size",
                "500",
                "--data",
                str(EXAMPLE.parents[1] / "data" / "mnist"),
            ]
        )
    out = capsys.readouterr().out + "\n".join(r.getMessage() for r in caplog.records)
    assert "1: Linear(784, 1000) -> SETLayer with 35,680 connections" in out
    assert "classifier.0: Linear(512, 512) -> SETLayer with 26,214 connections (10.00%)" in out
    assert set(results) == {"sparse MLP", "CNN, sparse classifier"}
    assert "synapses_study" not in EXAMPLE.read_text()  # a library install has no study
    for accuracies in results.values():
        assert len(accuracies) == 2 and accuracies[1] > accuracies[0] and accuracies[1] > 0.5
