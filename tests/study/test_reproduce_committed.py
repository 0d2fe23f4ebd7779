"""The committed runs' first epochs reproduce: exactly wherever the recorded environment says
the rounding is the same as here, and as far as rounding allows elsewhere, saying so.

One run of each way the study evolves: plain SET, near-parents regrowth, small newborns
(E1) with pruning recorded, and EvolNet's evolution during training passes. Each is retrained
for its first epochs here, with the rounding pinned (:mod:`synapses_study.training.rounding`), and
compared with

* its committed run: the initial topology exactly (random draws only, the same on any
  machine) and the losses to float32 noise; the later topology exactly when the committed
  run's ``environment.json`` records the same rounding as this process
  (:func:`~synapses_study.training.rounding.same_rounding`), else within a few connections per
  pixel, and a warning says that the exact comparison was not possible and why (the runs
  committed before the rounding was recorded name no processor, so for them it never is);
* its pinned reference, ``tests/reference_runs/<case>/``: the same first epochs made with
  the rounding pinned, compared bit for bit on any x86-64 processor with AVX2 (same torch,
  compiler and thread count), so a change of behaviour fails here whatever the processor.
  ``python tests/study/test_reproduce_committed.py --regenerate`` rewrites them (only after a
  deliberate change of the numbers, said in the commit). They were made from commit
  da1e10d, whose evolution and kernels were those the committed runs were made with.

A pruning decides by ranks, so where two weights are within rounding of each other one
processor keeps what another prunes: the topology is compared over the epochs that are
exact under one rounding (three for SET, two for near-parents, whose parents are drawn in
proportion to |weight|, one for EvolNet, which evolves within the epoch).
"""

from __future__ import annotations

# ruff: noqa: E402 (run as a script, it pins the rounding before torch is imported)
from synapses_study.training.rounding import in_effect, pin, pinnable, same_rounding

if __name__ == "__main__":
    pin()

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from synapses_study.reading.results import select_runs
from synapses_study.runs.run_dir import RunDir, read_metric_rows
from synapses_study.setup.config import ExperimentConfig
from synapses_study.training.engine import run_experiment

pytestmark = pytest.mark.slow

REFERENCES = Path(__file__).parents[1] / "reference_runs"
CASES = {
    "plain SET": ("reproduction", None, dict(weight_decay=0.0, seed=0), 3),
    "near-parents regrowth": ("extensions", "near_parents", dict(seed=0), 2),
    "E1: newborns at 0.05 sd, pruning recorded": (
        "why_it_inverts",
        "e1_small_newborns",
        dict(seed=0, input_regrowth_scale=0.05),
        3,
    ),
    "EvolNet phase 1": ("evolnet_triplet", "phase1", dict(seed=0, weight_decay=0.0), 1),
}
# Across processors (unpinned runs), a few ties break the other way in the compared epochs:
# 4 of 784 pixel counts by 1 at epoch 3 of plain SET on an AVX-512 processor.
MAX_PIXELS_DIFFERING = 16
MAX_COUNT_DIFFERENCE = 2


def _slug(case: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in case.lower()).strip("_")


def _case_config(case: str) -> tuple[ExperimentConfig, int]:
    sweep, entry, fields, epochs = CASES[case]
    return select_runs(sweep, entry, **fields)[0], epochs


def _environment(run: RunDir) -> dict:
    return json.loads(run.environment_file.read_text())


def _assert_same_losses(ours: RunDir, theirs: RunDir, epochs: int, exact: bool) -> None:
    """Exactly, or (``exact=False``) as rounding allows: the first epoch, trained on the
    same initial topology, to float32 noise; later ones, whose topology may differ by a few
    connections, to 0.5% of a loss and 0.5 points of accuracy."""
    a, b = read_metric_rows(ours.metrics_file)[:epochs], read_metric_rows(theirs.metrics_file)[:epochs]
    assert len(a) == len(b) == epochs
    for x, y in zip(a, b):
        first = x["epoch"] == 1
        for key in ("train_loss", "test_loss", "test_acc"):
            if exact:
                assert x[key] == y[key], (key, x, y)
            elif first or key != "test_acc":
                assert x[key] == pytest.approx(y[key], rel=1e-5 if first else 5e-3, abs=1e-7), (key, x, y)
            else:
                assert abs(x[key] - y[key]) <= 0.005, (key, x, y)


def _assert_same_topology(ours: RunDir, theirs: RunDir, epochs: int) -> None:
    np.testing.assert_array_equal(ours.topology()[: epochs + 1], theirs.topology()[: epochs + 1])
    if theirs.pruning_file.exists():
        np.testing.assert_array_equal(ours.pruning()[0][:epochs], theirs.pruning()[0][:epochs])


@pytest.fixture(scope="module")
def retrained(tmp_path_factory) -> dict[str, RunDir]:
    """Each case's first epochs, trained here once for both comparisons."""
    root = tmp_path_factory.mktemp("retrained")
    runs = {}
    for case in CASES:
        config, epochs = _case_config(case)
        runs[case] = RunDir(run_experiment(config, root / _slug(case), progress=False, stop_after=epochs))
    return runs


@pytest.mark.parametrize("case", list(CASES))
def test_the_first_epochs_of_a_committed_run_reproduce(case, retrained):
    config, epochs = _case_config(case)
    committed, ours = RunDir.of(config), retrained[case]
    np.testing.assert_array_equal(ours.topology()[0], committed.topology()[0])  # draws only
    _assert_same_losses(ours, committed, epochs, exact=False)
    same, why = same_rounding(_environment(committed), _environment(ours))
    if same:
        _assert_same_topology(ours, committed, epochs)
        return
    differ = np.abs(ours.topology()[: epochs + 1].astype(int) - committed.topology()[: epochs + 1])
    assert (differ > 0).sum(1).max() <= MAX_PIXELS_DIFFERING and differ.max() <= MAX_COUNT_DIFFERENCE, (
        f"{(differ > 0).sum(1).tolist()} pixel counts differ per epoch, by up to {differ.max()}: more than "
        "rounding explains"
    )
    warnings.warn(
        f"{committed.path.name}: topology compared within rounding, not exactly ({why}); {int((differ > 0).sum())} "
        "pixel counts differ",
        stacklevel=1,
    )


@pytest.mark.parametrize("case", list(CASES))
def test_the_first_epochs_repeat_their_pinned_reference_bit_for_bit(case, retrained):
    if not pinnable():
        pytest.skip("this processor cannot take the pinned paths (x86-64 with AVX2 and FMA)")
    _, epochs = _case_config(case)
    reference, ours = RunDir(REFERENCES / _slug(case)), retrained[case]
    same, why = same_rounding(_environment(reference), _environment(ours))
    if not same and why.startswith(("torch ", "threads ", "compiler ")):
        pytest.skip(f"the pinned reference was made with another {why}: not comparable bit for bit")
    assert same, f"the pinned reference and this run should round alike, but {why}"
    _assert_same_losses(ours, reference, epochs, exact=True)
    _assert_same_topology(ours, reference, epochs)


def regenerate() -> None:
    """Rewrite ``tests/reference_runs/`` from this checkout, rounding pinned."""
    if not in_effect()["pinned"]:
        raise SystemExit("the references must be made with the rounding pinned (x86-64 with AVX2 and FMA)")
    for case in CASES:
        config, epochs = _case_config(case)
        target = REFERENCES / _slug(case)
        shutil.rmtree(target, ignore_errors=True)
        made = RunDir(run_experiment(config, target.parent / "tmp", progress=False, stop_after=epochs))
        made.checkpoint_file.unlink()
        (made.path.parent / ".lock").unlink(missing_ok=True)
        (made.path / ".lock").unlink(missing_ok=True)
        made.path.rename(target)
        shutil.rmtree(target.parent / "tmp")
        print(f"{case}: {epochs} epoch(s) into {target}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        raise SystemExit("usage: python tests/study/test_reproduce_committed.py --regenerate")
    regenerate()
