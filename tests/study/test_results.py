"""Reading runs back into tidy tables."""

import numpy as np
import pandas as pd
import pytest

from synapses_study.reading.results import final_table, load_metrics, load_runs
from synapses_study.runs.run_dir import RunDir
from synapses_study.setup.config import ExperimentConfig
from synapses_study.training.engine import run_experiment
from synapses_study.training.sweep import ensure_runs


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, small_mnist):
    root = tmp_path_factory.mktemp("runs")
    configs = [
        ExperimentConfig(epochs=2, seed=s, weight_decay=wd, train_size=1000, test_size=200)
        for wd in (0.0, 1e-3)
        for s in (0, 1)
    ]
    for config in configs:
        run_experiment(config, root, data=small_mnist, progress=False)
    run_experiment(
        ExperimentConfig(epochs=3, seed=9, train_size=1000, test_size=200),
        root,
        data=small_mnist,
        progress=False,
        stop_after=1,
    )
    return root, configs


def test_load_runs_is_tidy_with_config_columns(runs_dir):
    root, configs = runs_dir
    runs = load_runs(configs, root)
    assert len(runs) == 4 * 2 and runs["run_id"].nunique() == 4
    assert set(runs["weight_decay"]) == {0.0, 1e-3} and set(runs["seed"]) == {0, 1}
    assert "decay_in_force" in runs and (runs["decay_in_force"] == runs["weight_decay"]).all()
    one = load_metrics(root / configs[0].run_id())
    pd.testing.assert_frame_equal(runs[runs.run_id == configs[0].run_id()].reset_index(drop=True), one)


def test_unfinished_runs_are_left_out_unless_asked(runs_dir):
    root, _ = runs_dir
    assert load_runs(results_dir=root)["run_id"].nunique() == 4
    assert load_runs(results_dir=root, finished_only=False)["run_id"].nunique() == 5


def test_final_table_mean_and_std_over_seeds(runs_dir):
    root, configs = runs_dir
    runs = load_runs(configs, root)
    table = final_table(runs, ["weight_decay"])
    last = runs[runs.epoch == 2]
    expected = last[last.weight_decay == 1e-3]["test_acc"]
    assert table.loc[1e-3, ("test_acc", "mean")] == pytest.approx(expected.mean())
    assert table.loc[1e-3, ("test_acc", "std")] == pytest.approx(expected.std())
    assert (table["seeds"] == 2).all()


def test_a_run_folder_gives_its_topology(runs_dir):
    root, configs = runs_dir
    counts = RunDir(root / configs[0].run_id()).topology()
    assert counts.shape == (3, 784) and counts.dtype == np.int64 and (counts.sum(1) == 14256).all()


def test_sweep_runs_carry_entry_label_and_chained_epochs(tmp_path, small_mnist):
    from synapses_study.reading.results import load_sweep_runs
    from synapses_study.setup.sweep_file import load_sweep

    path = tmp_path / "chain.yaml"
    path.write_text(
        "base: {model: EvolNet, evolution: pass, train_size: 1000, test_size: 200}\n"
        "grid: {seed: [0]}\n"
        "runs:\n"
        "  - {name: first, epochs: 2, evolution_proba: 0.25}\n"
        "  - {name: second, after: first, epochs: 3, evolution_proba: 0.1}\n"
    )
    sweep = load_sweep(path)
    assert load_sweep_runs(sweep, tmp_path / "results").empty
    for run in sweep.runs:
        run_experiment(run.config, tmp_path / "results", data=small_mnist, progress=False)
    runs = load_sweep_runs(sweep, tmp_path / "results")
    first, second = (runs[runs.entry == name] for name in ("first", "second"))
    assert list(first.chained_epoch) == [1, 2] and list(second.chained_epoch) == [3, 4, 5]
    assert list(second.epoch) == [1, 2, 3]
    assert set(runs.label) == {"first", "second"}


def test_ink_correlation_history_per_run_and_epoch(runs_dir):
    from synapses_study.measures.analysis import ink_correlation
    from synapses_study.reading.results import load_ink_correlation, training_ink

    root, configs = runs_dir
    rho = load_ink_correlation([root / c.run_id() for c in configs[:2]])
    assert len(rho) == 2 * 3 and list(rho.epoch[:3]) == [0, 1, 2]
    topology = RunDir(root / configs[1].run_id()).topology()
    one = rho[rho.run_id == configs[1].run_id()].set_index("epoch").ink_rho
    assert one[2] == pytest.approx(ink_correlation(topology[2], training_ink()))


def test_ensure_runs_waits_for_a_run_another_process_is_training(tmp_path, small_mnist, monkeypatch):
    """Two notebooks of `make -j2 figures` that need the same missing run: the second waits
    for the first to finish it instead of failing on its lock."""
    import threading

    from synapses_study.runs.run_dir import RunDir
    from synapses_study.training.engine import train

    monkeypatch.setattr("synapses_study.setup.data.load_mnist", lambda: small_mnist)
    config = ExperimentConfig(epochs=2, train_size=1000, test_size=200)
    folder = RunDir.of(config, tmp_path)
    locked = threading.Event()

    def other_process():  # holds the run's lock while it trains, as run_experiment does
        with folder.lock():
            locked.set()
            train(config, folder, small_mnist, progress=False)

    rival = threading.Thread(target=other_process)
    rival.start()
    locked.wait()
    assert ensure_runs([config], tmp_path, progress=False) == [folder.path]
    rival.join()
    assert folder.is_finished(config)


def test_startable_holds_back_runs_whose_source_is_missing(runs_dir):
    from synapses_study.training.sweep import startable

    root, configs = runs_dir
    finished = next(c for c in configs if (root / c.run_id() / "model.pt").exists())
    from_finished = ExperimentConfig(
        epochs=1, train_size=1000, test_size=200, evolution="off", topology_from=finished.run_id()
    )
    from_missing = ExperimentConfig(
        epochs=1, train_size=1000, test_size=200, evolution="off", topology_from="sparsenet_e1000_nowhere"
    )
    first = ExperimentConfig(epochs=1, train_size=1000, test_size=200, seed=7)
    chained = ExperimentConfig(epochs=1, train_size=1000, test_size=200, seed=7, init_from=first.run_id())
    ready, blocked = startable([from_finished, from_missing, first, chained], root)
    assert ready == [from_finished, first, chained] and blocked == [from_missing]
