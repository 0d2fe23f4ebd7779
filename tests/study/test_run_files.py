"""Run files: sealed checkpoints and models, compact arrays, damage and full disks."""

import errno
import io
import os

import numpy as np
import pytest
import torch

from synapses_study.runs import run_files
from synapses_study.runs.run_dir import RunDir
from synapses_study.runs.run_files import (
    DamagedFileError,
    load_checkpoint,
    load_model_state,
    read_pruning,
    read_topology,
    save_checkpoint,
    save_model,
    write_pruning,
    write_topology,
)
from synapses_study.setup.config import ExperimentConfig
from synapses_study.training.engine import run_experiment


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"weight": torch.randn(50), "connections": torch.randint(0, 784, (50, 2)), "big": torch.tensor([2**40])}


def test_model_round_trip_with_compact_indices(tmp_path):
    state = _state()
    save_model(tmp_path / "model.pt", state, "run_a")
    loaded = load_model_state(tmp_path / "model.pt")
    assert loaded.keys() == state.keys()
    for key in state:
        assert loaded[key].dtype == state[key].dtype and torch.equal(loaded[key], state[key])


def test_topology_and_pruning_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 300, (6, 784))  # steps beyond int8: stored wider, still exact
    write_topology(tmp_path / "topology.npz", counts)
    assert np.array_equal(read_topology(tmp_path / "topology.npz"), counts)
    np.savez_compressed(tmp_path / "other.npz", pixel_counts=counts.astype(np.int16))  # not this format
    with pytest.raises(DamagedFileError, match="other.npz holds no pixel_count_steps"):
        read_topology(tmp_path / "other.npz")
    pruned, mass = rng.integers(0, 20, (5, 784)), rng.uniform(0.01, 10, (5, 784))
    mass[:, :3] = 0.0  # pixels without connections
    write_pruning(tmp_path / "pruning.npz", pruned, mass)
    got_pruned, got_mass = read_pruning(tmp_path / "pruning.npz")
    assert np.array_equal(got_pruned, pruned) and np.array_equal(got_mass, mass.astype(np.float16).astype(np.float64))
    assert (np.abs(got_mass - mass) <= 2.0**-11 * mass).all() and (got_mass[:, :3] == 0).all()
    assert np.array_equal(got_mass, run_files.stored_weight_mass(mass))
    write_pruning(tmp_path / "again.npz", pruned, got_mass)  # rounding once is rounding for good
    assert np.array_equal(read_pruning(tmp_path / "again.npz")[1], got_mass)


@pytest.mark.parametrize("outside", [1e5, 1e-6])
def test_weight_mass_beyond_float16_normal_range_stays_float32(tmp_path, outside):
    pruned, mass = np.zeros((2, 784), dtype=np.int64), np.full((2, 784), 0.5)
    mass[1, 7] = outside
    write_pruning(tmp_path / "pruning.npz", pruned, mass)
    assert np.array_equal(read_pruning(tmp_path / "pruning.npz")[1], mass.astype(np.float32).astype(np.float64))


def _checkpoint(tmp_path):
    path = tmp_path / "run_a" / "checkpoint.pt"
    path.parent.mkdir()
    save_checkpoint(path, {"model": _state(), "epoch": 3}, "run_a", 3)
    return path


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda raw: raw[: len(raw) // 2], "truncated"),
        (lambda raw: b"", "it is empty"),
        (lambda raw: raw[:-100] + bytes([raw[-100] ^ 0x01]) + raw[-99:], "checksum mismatch"),
        (lambda raw: b"PK\x03\x04garbage", "no checksum: not a sealed file"),
    ],
    ids=["truncated", "empty", "flipped_byte", "unsealed_zip"],
)
def test_damaged_checkpoint_names_the_file_and_the_way_out(tmp_path, damage, match):
    path = _checkpoint(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DamagedFileError, match=match) as info:
        load_checkpoint(path, "run_a")
    assert (
        str(path) in str(info.value)
        and "delete" in str(info.value)
        and "to restart the run from scratch" in str(info.value)
    )


def test_checkpoint_of_another_run_is_refused(tmp_path):
    path = _checkpoint(tmp_path)
    with pytest.raises(DamagedFileError, match="belongs to run 'run_a', not 'run_b'"):
        load_checkpoint(path, "run_b")
    assert load_checkpoint(path, "run_a")["epoch"] == 3


def test_copied_checkpoint_from_another_config_stops_the_run(tmp_path, small_mnist):
    a, b = ExperimentConfig(epochs=3, seed=0), ExperimentConfig(epochs=3, seed=1)
    run_experiment(a, tmp_path, data=small_mnist, progress=False, stop_after=1)
    run_experiment(b, tmp_path, data=small_mnist, progress=False, stop_after=1)
    before = (tmp_path / b.run_id() / "metrics.csv").read_bytes()
    os.replace(tmp_path / a.run_id() / "checkpoint.pt", tmp_path / b.run_id() / "checkpoint.pt")
    with pytest.raises(DamagedFileError, match=f"belongs to run '{a.run_id()}'"):
        run_experiment(b, tmp_path, data=small_mnist, progress=False)
    assert (tmp_path / b.run_id() / "metrics.csv").read_bytes() == before  # nothing changed


def test_flipped_byte_in_checkpoint_is_never_resumed(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=2)
    run_dir = run_experiment(config, tmp_path, data=small_mnist, progress=False, stop_after=1)
    path = run_dir / "checkpoint.pt"
    raw = bytearray(path.read_bytes())
    raw[-500] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(DamagedFileError, match="checksum mismatch"):
        run_experiment(config, tmp_path, data=small_mnist, progress=False)


def test_truncated_model_is_not_finished(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=1)
    run_dir = run_experiment(config, tmp_path, data=small_mnist, progress=False)
    assert RunDir(run_dir).is_finished(config)
    model = run_dir / "model.pt"
    model.write_bytes(model.read_bytes()[:-10])
    assert not RunDir(run_dir).is_finished(config)
    with pytest.raises(DamagedFileError, match="model.pt is damaged"):
        load_model_state(model)
    before = (run_dir / "metrics.csv.xz").read_bytes()
    with pytest.raises(DamagedFileError, match="model.pt does not match manifest.json .*; delete the folder to rerun"):
        run_experiment(config, tmp_path, data=small_mnist, progress=False)  # never trained over
    assert (run_dir / "metrics.csv.xz").read_bytes() == before


def test_full_disk_is_named_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"previous")

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_files.os, "write", full)
    with pytest.raises(OSError, match=f"no space left on the device writing {target}"):
        save_checkpoint(target, {"model": _state(), "epoch": 1}, "run_a", 1)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_truncated_topology_names_the_file(tmp_path):
    path = tmp_path / "topology.npz"
    write_topology(path, np.ones((3, 784), dtype=np.int64))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DamagedFileError, match="topology.npz is damaged"):
        read_topology(path)


def test_an_unsealed_checkpoint_is_refused_not_resumed(tmp_path):
    # a plain torch.save file carries no run id and no checksum: it could be any run's
    path = tmp_path / "run_a" / "checkpoint.pt"
    path.parent.mkdir()
    torch.save({"model": _state(), "epoch": 2}, path)
    with pytest.raises(
        DamagedFileError,
        match=(
            "checkpoint.pt is damaged \\(no checksum: not a sealed file.*; delete .*run_a to restart the run from "
            "scratch"
        ),
    ):
        load_checkpoint(path, "run_a")


def _compressions(path) -> set[int]:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return {member.compress_type for member in archive.infolist()}


def test_a_finished_run_is_written_with_xz_and_reads_back_what_training_wrote(tmp_path, small_mnist):
    import zipfile

    config = ExperimentConfig(epochs=2, record_pruning=True)
    partial = run_experiment(config, tmp_path / "partial", data=small_mnist, progress=False, stop_after=1)
    assert _compressions(partial / "topology.npz") == {zipfile.ZIP_DEFLATED}  # in progress: fast zlib
    run_dir = run_experiment(config, tmp_path / "whole", data=small_mnist, progress=False)
    assert run_files.read_sealed(run_dir / "model.pt", "")[0]["compression"] == "xz"
    for name in ("topology.npz", "pruning.npz"):
        assert _compressions(run_dir / name) == {zipfile.ZIP_LZMA}
    # the same arrays as the zlib files of the same run (written again, unfinished)
    fast = tmp_path / "fast.npz"
    write_topology(fast, read_topology(run_dir / "topology.npz"))
    assert _compressions(fast) == {zipfile.ZIP_DEFLATED} and np.array_equal(
        read_topology(fast), read_topology(run_dir / "topology.npz")
    )


def test_final_arrays_are_byte_identical_whenever_written(tmp_path, monkeypatch):
    import time

    counts = np.random.default_rng(0).integers(0, 50, (4, 784))
    write_topology(tmp_path / "a.npz", counts, final=True)
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # another day, another zip timestamp
    write_topology(tmp_path / "b.npz", counts, final=True)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_a_run_that_keeps_no_network_finishes_without_one(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=2, keep_network=False)
    assert config.run_id() != ExperimentConfig(epochs=2).run_id()
    partial = run_experiment(config, tmp_path, data=small_mnist, progress=False, stop_after=1)
    assert RunDir(partial).state(config) == "partial"
    run_dir = run_experiment(config, tmp_path, data=small_mnist, progress=False)
    folder = RunDir(run_dir)
    assert not (run_dir / "model.pt").exists() and not (run_dir / "checkpoint.pt").exists()
    assert folder.is_finished(config) and folder.state(config) == "done"
    with pytest.raises(FileNotFoundError, match="kept no final network \\(keep_network: false\\)"):
        folder.model_state()
    # killed after sealing, before the checkpoint was removed: finished, and the next run
    # call removes the stray checkpoint instead of leaving it for ever
    save_checkpoint(run_dir / "checkpoint.pt", {"model": _state(), "epoch": 2}, config.run_id(), 2)
    assert folder.state(config) == "done"
    run_experiment(config, tmp_path, data=small_mnist, progress=False)
    assert not (run_dir / "checkpoint.pt").exists()
    # before sealing (no manifest yet), the checkpoint is what counts: unfinished
    (run_dir / "manifest.json").unlink()
    save_checkpoint(run_dir / "checkpoint.pt", {"model": _state(), "epoch": 2}, config.run_id(), 2)
    assert folder.problem(config) == "unfinished: a checkpoint is there" and folder.state(config) == "partial"


def test_a_finished_run_keeps_its_metrics_as_xz_text_and_a_run_in_progress_as_plain(tmp_path, small_mnist):
    import pandas as pd

    config = ExperimentConfig(epochs=2)
    run_dir = run_experiment(config, tmp_path, data=small_mnist, progress=False, stop_after=1)
    assert (run_dir / "metrics.csv").exists() and not (run_dir / "metrics.csv.xz").exists()
    in_progress = (run_dir / "metrics.csv").read_text()
    run_experiment(config, tmp_path, data=small_mnist, progress=False)
    assert not (run_dir / "metrics.csv").exists() and RunDir(run_dir).metrics_file.name == "metrics.csv.xz"
    finished = run_files.read_text(run_dir / "metrics.csv.xz")
    assert finished.startswith(in_progress) and finished.count("\n") == 3  # header and two epochs
    assert pd.read_csv(run_dir / "metrics.csv.xz").equals(
        pd.read_csv(io.StringIO(finished))
    )  # pandas reads it as it is
    assert RunDir(run_dir).epochs_recorded() == 2 and RunDir(run_dir).is_finished(config)


def test_a_damaged_metrics_xz_names_itself(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=1)
    run_dir = run_experiment(config, tmp_path, data=small_mnist, progress=False)
    packed = run_dir / "metrics.csv.xz"
    packed.write_bytes(packed.read_bytes()[:-8])
    with pytest.raises(DamagedFileError, match=f"{packed} is damaged .*; delete {run_dir} to rerun"):
        RunDir(run_dir).epochs_recorded()


def test_a_crash_inside_finish_resumes_from_the_packed_metrics(tmp_path, small_mnist):
    """finish() writes metrics.csv.xz before it drops the checkpoint: a crash in between
    leaves a checkpoint beside packed metrics, and the run resumes from them to the same end."""
    import shutil

    config = ExperimentConfig(epochs=2)
    reference = run_experiment(config, tmp_path / "reference", data=small_mnist, progress=False)
    run_dir = run_experiment(config, tmp_path / "crashed", data=small_mnist, progress=False, stop_after=1)
    history = RunDir(run_dir).history(1, config)
    shutil.copy(run_dir / "checkpoint.pt", tmp_path / "checkpoint.pt")
    RunDir(run_dir).write_history(history, final=True)  # finish() got this far
    assert not (run_dir / "metrics.csv").exists()
    assert RunDir(run_dir).state(config) == "partial"
    run_experiment(config, tmp_path / "crashed", data=small_mnist, progress=False)
    strip = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]  # noqa: E731 (wall-clock seconds differ)
    assert strip(run_files.read_text(run_dir / "metrics.csv.xz")) == strip(
        run_files.read_text(reference / "metrics.csv.xz")
    )


def test_a_plain_torch_save_file_is_refused(tmp_path):
    # no seal: nothing says which run it belongs to or whether it is whole
    path = tmp_path / "model.pt"
    torch.save(_state(), path)
    with pytest.raises(DamagedFileError, match="model.pt is damaged \\(no checksum: not a sealed file"):
        load_model_state(path)
