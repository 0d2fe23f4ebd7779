"""The rounding pinned for the study's runs (synapses_study.training.rounding): a run started under
two different ambient settings gives identical files; left unpinned, it does not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from synapses_study.training import rounding

# Two processes told to compute differently before Python starts: torch's generic kernels
# and MKL's own choice, against torch's AVX2 kernels and MKL's compatible branch.
AMBIENT = {
    "a": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AUTO", "ONEDNN_MAX_CPU_ISA": "ALL"},
    "b": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
RUN = ["--epochs", "2", "--train-size", "3000", "--test-size", "500", "--record-pruning", "true", "--no-progress"]


def _run(results: Path, ambient: dict[str, str], mode: str) -> Path:
    env = {k: v for k, v in os.environ.items() if k not in rounding.PINNED_ENV} | ambient
    env[rounding.MODE_VARIABLE] = mode
    done = subprocess.run(
        [sys.executable, "-m", "synapses_study.training.run", *RUN, "--results-dir", str(results)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (folder,) = [p for p in results.iterdir() if p.is_dir()]
    return folder


def _metrics(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "metrics.csv.xz").drop(columns="seconds")


@pytest.mark.slow
@pytest.mark.skipif(not rounding.pinnable(), reason="needs an x86-64 processor with AVX2 and FMA")
def test_a_pinned_run_gives_identical_files_under_two_ambient_settings(tmp_path):
    a = _run(tmp_path / "a", AMBIENT["a"], "pinned")
    b = _run(tmp_path / "b", AMBIENT["b"], "pinned")
    for name in ("topology.npz", "pruning.npz", "model.pt", "config.json", "environment.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    pd.testing.assert_frame_equal(_metrics(a), _metrics(b), check_exact=True)
    # the control: left to the ambient settings, the same two runs round differently
    fast_a = _run(tmp_path / "fast_a", AMBIENT["a"], "fastest")
    fast_b = _run(tmp_path / "fast_b", AMBIENT["b"], "fastest")
    assert not _metrics(fast_a).equals(_metrics(fast_b))


def test_same_rounding_needs_a_record_and_matches_pinned_runs_across_processors():
    pinned = {"pinned": True, "torch_cpu_capability": "AVX2", "blas": "MKL", "mkl_cbwr": "COMPATIBLE,STRICT"}
    here = {"torch": "2", "threads": 1, "rounding": pinned | {"processor": {"model": "A"}}}
    there = {"torch": "2", "threads": 1, "rounding": pinned | {"processor": {"model": "B"}}}
    assert rounding.same_rounding(there, here) == (True, "same rounding")
    assert not rounding.same_rounding({"torch": "2", "threads": 1}, here)[0]
    assert "threads" in rounding.same_rounding(there | {"threads": 2}, here)[1]
    unpinned = {k: v | {"rounding": v["rounding"] | {"pinned": False}} for k, v in (("a", here), ("b", there))}
    same, why = rounding.same_rounding(unpinned["b"], unpinned["a"])
    assert not same and why.startswith("processor")


@pytest.mark.skipif(not rounding.pinnable(), reason="needs an x86-64 processor with AVX2 and FMA")
def test_a_pinned_process_keeps_its_own_compile_cache_unless_told_one(monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.delenv(rounding.INDUCTOR_CACHE_VARIABLE, raising=False)
    monkeypatch.delenv(rounding.MODE_VARIABLE, raising=False)
    assert rounding.pin()
    pinned = os.environ[rounding.INDUCTOR_CACHE_VARIABLE]
    assert pinned == rounding.pinned_inductor_cache() and Path(pinned) != Path(default_cache_dir())
    monkeypatch.setenv(rounding.INDUCTOR_CACHE_VARIABLE, str(tmp_path))  # the user's own choice stands
    assert rounding.pin() and os.environ[rounding.INDUCTOR_CACHE_VARIABLE] == str(tmp_path)


def test_an_unknown_rounding_mode_is_named(monkeypatch):
    monkeypatch.setenv(rounding.MODE_VARIABLE, "fast")
    with pytest.raises(ValueError, match=r"SYNAPSES_ROUNDING='fast': use one of pinned, fastest"):
        rounding.mode()


def test_the_pinning_cost_command_refuses_too_few_epochs(capsys):
    from synapses_study.bench.pinning_cost import main

    assert main(["--epochs", "1"]) == 2
    assert "--epochs must be at least 2" in capsys.readouterr().err
