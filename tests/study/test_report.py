"""Generated tables of the write-up: regenerated from results, checked for staleness."""

import numpy as np
import pandas as pd
import pytest

from synapses_study.runs.run_dir import RunDir
from synapses_study.setup.sweep_file import load_sweep
from synapses_study.training.engine import run_experiment
from synapses_study.writeup.report import main, refresh

SWEEP = """
base: {epochs: 3, train_size: 1000, test_size: 200}
grid:
  weight_decay: [0.0, 1.0e-3]
  seed: [0, 1]
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory, small_mnist):
    tmp = tmp_path_factory.mktemp("report")
    (tmp / "configs").mkdir()
    (tmp / "configs" / "tiny.yaml").write_text(SWEEP)
    runs = load_sweep(tmp / "configs" / "tiny.yaml").runs
    for run in runs[:3]:  # one configuration misses a seed
        run_experiment(run.config, tmp / "results", data=small_mnist, progress=False)
    return tmp, runs


def test_table_rows_are_mean_and_std_over_the_finished_seeds(finished):
    tmp, runs = finished
    text = refresh("<!-- table: tiny -->\n<!-- /table -->\n", tmp / "results", tmp / "configs", allow_missing=True)
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| weight_decay")]
    assert [r[0] for r in rows] == ["| weight_decay=0.0", "| weight_decay=0.001"]
    assert rows[0][2] == "2 of 2" and rows[1][2] == "1 of 2"
    metrics = [pd.read_csv(tmp / "results" / r.config.run_id() / "metrics.csv.xz").iloc[-1] for r in runs[:3]]
    wd0 = [m for m, r in zip(metrics, runs) if r.config.weight_decay == 0.0]
    expected = pd.Series([m["test_acc"] for m in wd0])
    assert rows[0][6] == f"{expected.mean() * 100:.2f} ± {expected.std() * 100:.2f}"
    single = [m for m, r in zip(metrics, runs) if r.config.weight_decay == 1e-3][0]
    assert rows[1][6] == f"{single['test_acc'] * 100:.2f}"
    # centre ratio and ink correlation on the survivors of the final network (pruned off), the
    # recorded peak of center_ratio, from the run's own files
    from synapses_study.measures.analysis import ink_correlation, ink_frequency
    from synapses_study.measures.survivors import final_survivors
    from synapses_study.measures.topology import center_ratio
    from synapses_study.setup.data import load_mnist

    one = [r for r in runs[:3] if r.config.weight_decay == 1e-3][0]
    folder = RunDir(tmp / "results" / one.config.run_id())
    survivors = final_survivors(folder.model_state())
    assert survivors.sum() < folder.topology()[-1].sum()  # the last pruning's connections are left out
    assert rows[1][7] == f"{center_ratio(survivors):.3f}"
    assert rows[1][8] == f"{ink_correlation(survivors, ink_frequency(load_mnist().train_x)):.3f}"
    history = pd.read_csv(tmp / "results" / one.config.run_id() / "metrics.csv.xz")
    peak = history["center_ratio"].idxmax()
    assert rows[1][9] == f"{history['center_ratio'][peak]:.3f}"
    assert rows[1][10].rstrip(" |") == f"{history['epoch'][peak]:.0f}"


def test_overfitting_view_finds_the_minimum_test_loss(finished):
    tmp, runs = finished
    text = refresh(
        "<!-- table: tiny:overfitting -->\n<!-- /table -->\n", tmp / "results", tmp / "configs", allow_missing=True
    )
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| weight_decay")]
    assert "min test loss | at epoch | test loss at end" in text
    one = [r for r in runs[:3] if r.config.weight_decay == 1e-3][0]
    metrics = pd.read_csv(tmp / "results" / one.config.run_id() / "metrics.csv.xz")
    # three epochs, shorter than the window: one centred average over the whole run
    assert rows[1][3] == f"{metrics['test_loss'].mean():.4f}" == rows[1][5]
    assert rows[1][4] == "2" and rows[1][8].rstrip(" |") == "0.00"


def test_overfitting_summary_on_a_known_curve(tmp_path):
    from synapses_study.reading.metrics import overfitting_summary
    from synapses_study.setup.config import ExperimentConfig

    epochs = np.arange(1, 101)
    loss = (epochs - 40) ** 2 / 1e4 + 0.1  # bottoms out at epoch 40
    acc = 0.9 + epochs / 1e4  # keeps creeping up
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(ExperimentConfig(epochs=100).to_json())
    pd.DataFrame(
        {
            "epoch": epochs,
            "train_loss": loss,
            "train_acc": acc,
            "test_loss": loss,
            "test_acc": acc,
            "center_ratio": 1.0,
            "decay_in_force": 0.0,
            "seconds": 1.0,
        }
    ).to_csv(run / "metrics.csv", index=False)
    summary = overfitting_summary(run, window=5)
    assert summary["min_epoch"] == 40 and summary["min_test_loss"] == pytest.approx(0.1 + 2 * (1 + 4) / 5 / 1e4)
    assert summary["test_acc"] == pytest.approx(0.9 + 98 / 1e4)  # centred on epoch 98
    assert summary["acc_gain"] == pytest.approx(58 / 1e4)
    assert summary["max_acc_epoch"] == 98 and summary["max_acc"] == summary["test_acc"]  # still rising at the end


def test_outcome_view_joins_the_last_epoch_and_the_smoothed_peak(finished):
    tmp, runs = finished
    text = refresh(
        "<!-- table: tiny:outcome -->\n<!-- /table -->\n", tmp / "results", tmp / "configs", allow_missing=True
    )
    assert (
        "| test loss | test acc (%) | best test acc, smoothed (%) | at epoch | ink ρ, lowest to highest seed |" in text
    )
    row = [line.split(" | ") for line in text.splitlines() if line.startswith("| weight_decay=0.001")][0]
    one = [r for r in runs[:3] if r.config.weight_decay == 1e-3][0]
    metrics = pd.read_csv(tmp / "results" / one.config.run_id() / "metrics.csv.xz")
    assert row[4] == f"{metrics['test_acc'].iloc[-1] * 100:.2f}"
    assert row[5] == f"{metrics['test_acc'].mean() * 100:.2f}" and row[6] == "2"  # three epochs: one window


def test_a_table_can_show_one_entry_of_a_sweep(finished):
    """``<sweep>/<entry>`` keeps that entry's rows; the runs are found by their configuration."""
    tmp, _ = finished
    (tmp / "configs" / "entries.yaml").write_text(
        "base: {epochs: 3, train_size: 1000, test_size: 200}\n"
        "grid: {seed: [0, 1]}\n"
        "runs:\n  - {name: plain, weight_decay: 0.0}\n  - {name: decayed, weight_decay: 1.0e-3}\n"
    )
    whole = refresh("<!-- table: tiny -->\n<!-- /table -->\n", tmp / "results", tmp / "configs", allow_missing=True)
    one = refresh(
        "<!-- table: entries/decayed -->\n<!-- /table -->\n", tmp / "results", tmp / "configs", allow_missing=True
    )
    rows = [line for line in one.splitlines() if line.startswith("| ") and not line.startswith("| configuration")]
    assert len(rows) == 1 and rows[0].startswith("| decayed |")
    decayed_in_whole = [line for line in whole.splitlines() if line.startswith("| weight_decay=0.001")][0]
    assert rows[0].split(" | ")[1:] == decayed_in_whole.split(" | ")[1:]
    with pytest.raises(ValueError, match="no entry 'nope' in entries; known: \\['decayed', 'plain'\\]"):
        refresh(
            "<!-- table: entries/nope:overfitting -->\n<!-- /table -->\n",
            tmp / "results",
            tmp / "configs",
            allow_missing=True,
        )


@pytest.mark.parametrize(
    "rhos, verdict",
    [
        ([0.05, -0.09], "none"),
        ([0.1, 0.39], "positive"),
        ([0.4, 0.7], "strongly positive"),
        ([-0.45, -0.41], "strongly negative"),
        ([-0.45, -0.2], "negative"),
        ([-0.2, 0.0, 0.3], "1 negative, 1 none, 1 positive"),
        ([], "–"),
        ([float("nan")] * 3, "–"),  # a dense network: no sparse first layer to rank
        ([0.45, float("nan")], "strongly positive"),
    ],
)
def test_topology_verdict_thresholds(rhos, verdict):
    from synapses_study.writeup.tables import topology_verdict

    assert topology_verdict(np.array(rhos)) == verdict


def test_value_range_leaves_out_runs_without_the_value():
    from synapses_study.writeup.tables import value_range

    assert value_range(np.array([0.2, float("nan"), -0.1])) == "-0.100 to 0.200"
    assert value_range(np.array([float("nan")] * 2)) == "–"


def test_topology_view_over_several_sweeps(finished):
    """Rows of ``a+b:topology`` are those of each sweep, named after it, with the per-seed range."""
    tmp, runs = finished
    (tmp / "configs" / "single.yaml").write_text(
        "base: {epochs: 3, train_size: 1000, test_size: 200, weight_decay: 0.001}\n"
    )
    text = refresh(
        "<!-- table: tiny+single:topology -->\n<!-- /table -->\n", tmp / "results", tmp / "configs", allow_missing=True
    )
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and "configuration" not in line]
    assert [r[0] for r in rows] == ["| tiny: weight_decay=0.0", "| tiny: weight_decay=0.001", "| single"]
    from synapses_study.measures.analysis import ink_correlation
    from synapses_study.measures.survivors import final_survivors
    from synapses_study.reading.results import training_ink

    finals = [final_survivors(RunDir(tmp / "results" / r.config.run_id()).model_state()) for r in runs[:2]]
    rhos = [ink_correlation(counts, training_ink()) for counts in finals]
    assert rows[0][5] == f"{min(rhos):.3f} to {max(rhos):.3f}"
    assert rows[2][1:3] == ["3", "1 of 1"]  # seed 0 at 1e-3: the run tiny's sweep finished
    assert rows[2][4:6] == rows[1][4:6]


def test_errors_view_reevaluates_the_saved_network(finished):
    """The final network, rebuilt from its files, gives back the test loss the run logged."""
    tmp, runs = finished
    text = refresh(
        "<!-- table: tiny:errors -->\n<!-- /table -->\n", tmp / "results", tmp / "configs", allow_missing=True
    )
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| weight_decay")]
    one = [r for r in runs[:3] if r.config.weight_decay == 1e-3][0]
    last = pd.read_csv(tmp / "results" / one.config.run_id() / "metrics.csv.xz").iloc[-1]
    assert rows[1][3] == f"{last['test_loss']:.4f}"
    assert rows[1][4] == f"{(1 - last['test_acc']) * 100:.2f}"


def test_check_detects_stale_tables(finished, tmp_path, monkeypatch, capsys):
    tmp, _ = finished
    import synapses_study.writeup.tables as tables

    monkeypatch.setattr(tables, "CONFIGS", tmp / "configs")
    doc = tmp_path / "doc.md"
    doc.write_text("Numbers:\n<!-- table: tiny -->\n| made up |\n<!-- /table -->\nThe end.\n")
    results = ["--results-dir", str(tmp / "results"), "--allow-missing"]
    assert main([str(doc), "--check", *results]) == 1
    assert "stale table(s) or value(s): tiny" in capsys.readouterr().out
    assert main([str(doc), *results]) == 0
    assert doc.read_text().startswith("Numbers:\n") and doc.read_text().endswith("The end.\n")
    assert main([str(doc), "--check", *results]) == 0


def test_a_missing_run_is_named_and_never_silently_dropped(finished, tmp_path, monkeypatch, capsys):
    tmp, runs = finished
    import synapses_study.writeup.tables as tables

    monkeypatch.setattr(tables, "CONFIGS", tmp / "configs")
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- table: tiny -->\n| old |\n<!-- /table -->\n")
    for argv in ([str(doc), "--check"], [str(doc)]):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--results-dir", str(tmp / "results")])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"{runs[3].config.run_id()} (no run folder)" in err and "--allow-missing" in err and err.count("\n") == 1
    assert doc.read_text() == "<!-- table: tiny -->\n| old |\n<!-- /table -->\n"  # nothing rewritten


def test_incomplete_runs_say_what_is_missing(finished, tmp_path):
    import shutil

    from synapses_study.runs.run_files import read_text

    tmp, runs = finished
    config = runs[0].config
    run_dir = tmp_path / config.run_id()
    shutil.copytree(tmp / "results" / config.run_id(), run_dir)
    assert RunDir(run_dir).problem(config) is None
    (run_dir / "metrics.csv.xz").unlink()  # a run stopped one epoch short keeps its metrics plain
    (run_dir / "metrics.csv").write_text(
        "".join(read_text(tmp / "results" / config.run_id() / "metrics.csv.xz").splitlines(True)[:-1])
    )
    assert (
        RunDir(run_dir).problem(config) == "metrics.csv.xz is missing"
    )  # the manifest names what the finished run held
    (run_dir / "manifest.json").unlink()  # a finished run's model.pt without its manifest: damaged, not new
    assert RunDir(run_dir).problem(config) == "manifest.json is missing but the finished run's model.pt is there"
    assert RunDir(run_dir).state(config) == "damaged"
    (run_dir / "model.pt").unlink()
    assert RunDir(run_dir).problem(config) == "not finished (no manifest.json)"
    (run_dir / "checkpoint.pt").write_bytes(b"stands for a checkpoint")
    assert RunDir(run_dir).problem(config) == "unfinished: a checkpoint is there"
    assert RunDir(tmp_path / "nowhere").problem(config) == "no run folder"


def test_truncated_topology_is_named(finished, tmp_path):
    import shutil

    from synapses_study.runs.run_files import DamagedFileError

    tmp, runs = finished
    shutil.copytree(tmp / "results", tmp_path / "results")
    topology = tmp_path / "results" / runs[0].config.run_id() / "topology.npz"
    topology.write_bytes(topology.read_bytes()[:50])
    with pytest.raises(DamagedFileError, match="topology.npz does not match manifest.json"):
        refresh("<!-- table: tiny -->\n<!-- /table -->\n", tmp_path / "results", tmp / "configs", allow_missing=True)


def test_the_write_up_matches_the_committed_results():
    from pathlib import Path

    write_up = Path(__file__).parents[2] / "regularization.md"
    assert main([str(write_up), "--check"]) == 0


def test_drift_view_reads_the_topology_at_given_epochs(finished):
    """``drift`` gives ink ρ after chosen epochs, from the run's own topology; epochs past
    the end of a run have no value."""
    tmp, runs = finished
    from synapses_study.measures.analysis import ink_correlation
    from synapses_study.reading.metrics import drift_summary
    from synapses_study.reading.results import training_ink

    run_dir = tmp / "results" / runs[0].config.run_id()
    drift = drift_summary(run_dir, epochs=(0, 2, 3, 4))
    topology = RunDir(run_dir).topology()
    rho = ink_correlation(topology, training_ink())
    assert drift["rho@0"] == rho[0]
    assert drift["rho@2"] == pytest.approx(rho[:3].mean()) and drift["rho@3"] == pytest.approx(
        rho.mean()
    )  # windows clipped at the start
    assert np.isnan(drift["rho@4"]) and set(drift) == {"rho@0", "rho@2", "rho@3", "rho@4"}
    text = refresh(
        "<!-- table: tiny:drift -->\n<!-- /table -->\n", tmp / "results", tmp / "configs", allow_missing=True
    )
    assert "| recorded ink ρ, epochs 31-50 |" in text  # the default epochs all lie past a 3-epoch run
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| weight_decay")]
    assert all(cell.rstrip(" |") == "–" for row in rows for cell in row[3:])


def _recorded_run(tmp, data):
    """The 2-epoch run of the sweep ``recorded`` (pruning recorded) in ``tmp``, trained once."""
    (tmp / "configs" / "recorded.yaml").write_text(
        "base: {epochs: 2, train_size: 1000, test_size: 200, record_pruning: true}\n"
    )
    config = load_sweep(tmp / "configs" / "recorded.yaml").runs[0].config
    run_dir = tmp / "results" / config.run_id()
    if RunDir(run_dir).problem(config) is not None:
        run_experiment(config, tmp / "results", data=data, progress=False)
    return run_dir


def test_survivors_drift_reads_what_each_epochs_pruning_kept(finished, small_mnist):
    """``survivors_drift`` averages ink ρ of the recorded counts minus that epoch's pruned
    connections (row 0: the initial topology), and refuses a run without a pruning record."""
    tmp, runs = finished
    from synapses_study.measures.analysis import ink_correlation
    from synapses_study.reading.metrics import drift_summary
    from synapses_study.reading.results import training_ink

    run_dir = _recorded_run(tmp, small_mnist)
    topology, (pruned, _) = RunDir(run_dir).topology(), RunDir(run_dir).pruning()
    kept = np.vstack([topology[:1], topology[1:] - pruned])  # (3, 784): row e after epoch e
    rho = np.asarray(ink_correlation(kept, training_ink()))
    drift = drift_summary(run_dir, epochs=(1, 2, 3), survivors=True)
    assert drift["rho@1"] == pytest.approx(rho[:2].mean()) and drift["rho@2"] == pytest.approx(rho.mean())
    assert np.isnan(drift["rho@3"])
    assert drift["rho@2"] != pytest.approx(drift_summary(run_dir, epochs=(2,))["rho@2"])  # not the recorded ρ
    text = refresh("<!-- table: recorded:survivors_drift -->\n<!-- /table -->\n", tmp / "results", tmp / "configs")
    assert "| ink ρ on survivors, epochs 31-50 |" in text
    with pytest.raises(ValueError, match="did not record its pruning \\(record_pruning\\)"):
        drift_summary(tmp / "results" / runs[0].config.run_id(), survivors=True)


def test_mean_std_skips_missing_values():
    from synapses_study.reading.stats import mean_std

    assert mean_std(2)(np.array([1.0, np.nan, 3.0])) == "2.00 ± 1.41"
    assert mean_std(2)(np.array([np.nan])) == "–"


def test_pruning_views_read_the_recorded_pruning(finished, small_mnist):
    """``pruning`` rows are :func:`pruning_by_region` averaged over the last epochs; ``pruning_never_inked``
    counts only never-inked pixels as blank; unrecorded runs are refused by name."""
    tmp, runs = finished
    from synapses_study.measures.analysis import pruning_by_region
    from synapses_study.reading.results import training_ink

    run_dir = _recorded_run(tmp, small_mnist)
    tables = {
        view: refresh(
            f"<!-- table: recorded:{view} -->\n<!-- /table -->\n", tmp / "results", tmp / "configs", allow_missing=True
        )
        for view in ("pruning", "pruning_never_inked")
    }
    for view, blank_below in (("pruning", 0.01), ("pruning_never_inked", 1e-6)):
        regions = pruning_by_region(
            *RunDir(run_dir).pruning(), RunDir(run_dir).topology(), training_ink(), blank_below=blank_below
        )
        last = regions.groupby("region")[
            ["share_of_connections", "pruned_fraction", "mean_abs_weight"]
        ].mean()  # both epochs: inside the window
        row = [line for line in tables[view].splitlines() if line.startswith("| all |")][0].rstrip(" |").split(" | ")
        expected = [
            (training_ink() < blank_below).mean(),
            last.loc["blank", "share_of_connections"],
            last.loc["blank", "pruned_fraction"],
            last.loc["inked", "pruned_fraction"],
            last.loc["blank", "mean_abs_weight"],
            last.loc["inked", "mean_abs_weight"],
        ]
        assert row[3:] == [f"{value:.3f}" for value in expected]
    assert tables["pruning"] != tables["pruning_never_inked"]
    with pytest.raises(FileNotFoundError, match="has no pruning.npz: only runs made with record_pruning have one"):
        refresh("<!-- table: tiny:pruning -->\n<!-- /table -->\n", tmp / "results", tmp / "configs", allow_missing=True)


def test_values_in_the_prose_are_filled_from_tables_and_facts(finished, monkeypatch):
    tmp, runs = finished
    import synapses_study.writeup.facts as facts

    monkeypatch.setitem(facts.FACTS, "answer", lambda results: f"{len(list(results.iterdir()))} folders")
    table = refresh("<!-- table: tiny -->\n<!-- /table -->\n", tmp / "results", tmp / "configs", allow_missing=True)
    cell = [line for line in table.splitlines() if line.startswith("| weight_decay=0.0 |")][0].split(" | ")[6]
    text = "acc <!--v tiny | weight_decay=0.0 | test acc (%) -->old<!--/v--> and <!--v fact:answer -->?<!--/v-->."
    fresh = refresh(text, tmp / "results", tmp / "configs", allow_missing=True)
    count = len(list((tmp / "results").iterdir()))
    assert fresh == (
        f"acc <!--v tiny | weight_decay=0.0 | test acc (%) -->{cell}<!--/v--> and <!--v fact:answer -->{count} "
        "folders<!--/v-->."
    )
    from synapses_study.writeup.report import stale_markers

    assert stale_markers(text, fresh) == ["tiny | weight_decay=0.0 | test acc (%)", "fact:answer"]
    assert stale_markers(fresh, fresh) == []
    with pytest.raises(ValueError, match="no row 'weight_decay=5'"):
        refresh(
            "<!--v tiny | weight_decay=5 | test acc (%) -->?<!--/v-->",
            tmp / "results",
            tmp / "configs",
            allow_missing=True,
        )


# ---------------------------------------------------------------------------- the write-up itself
def _write_up() -> str:
    from pathlib import Path

    return (Path(__file__).parents[2] / "regularization.md").read_text()


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_the_write_up_opens_with_the_answer_and_keeps_its_main_text_short():
    import re

    text = _write_up()
    assert text.split("\n## ")[1].startswith("Summary\n")
    summary = _section(text, "Summary")
    prose = re.sub(r"<!--v [^>]*-->|<!--/v-->", "", summary.split("![")[0])
    assert len(prose.split()) <= 250
    assert "figures/summary_topology.png" in summary
    assert "<!-- table: headline_seeds+extensions_1000:verdict -->" in summary
    # the main text's budget, counted as a reader sees it (the value markers and table
    # comments left out, whose length says nothing about the reading): 22,750 characters,
    # what the earlier budget of 26,500 with the markers came to when the count changed
    main_text = re.sub(r"<!--.*?-->", "", text[: text.index("\n## Appendix\n")], flags=re.DOTALL)
    assert len(main_text) <= 22_750


def test_numbers_in_the_summary_and_conclusions_are_generated():
    # A measured value has a decimal point and two or more decimals (configuration values
    # such as 1e-3 or epsilon 11 do not): each must sit inside a <!--v ... --> marker.
    import re

    text = _write_up()
    for heading in ("Summary", "Conclusions"):
        section = _section(text, heading).split("<!-- table:")[0]
        outside = re.sub(r"<!--v [^>]*-->.*?<!--/v-->", "", section, flags=re.DOTALL)
        # -0.424 is a blank pixel after the standardisation (-0.1307 / 0.3081), not a result
        assert [n for n in re.findall(r"\d\.\d{2,}", outside) if n != "0.424"] == [], heading


def test_runs_the_write_up_calls_shared_trajectories_repeat_each_other():
    """The Method section says which runs are prefixes or repeats of others, bit for bit."""
    from synapses_study.reading.results import load_metrics, select_runs
    from synapses_study.runs.run_dir import RunDir

    columns = ["train_loss", "train_acc", "test_loss", "test_acc", "center_ratio"]

    def prefix_of(short, long):
        a, b = load_metrics(RunDir.of(short).path)[columns], load_metrics(RunDir.of(long).path)[columns]
        return a.equals(b.iloc[: len(a)])

    for wd in (0.0, 1e-3, 1e-2):
        for seed in (0, 1, 2):
            assert prefix_of(
                select_runs("sweep155", weight_decay=wd, seed=seed)[0],
                select_runs("reproduction", weight_decay=wd, seed=seed)[0],
            )
        for seed in (0, 1):
            assert prefix_of(
                select_runs("mechanism", weight_decay=wd, seed=seed)[0],
                select_runs("sweep155", weight_decay=wd, seed=seed)[0],
            )
    for entry, fields in (
        ("unit_inputs", dict(weight_decay=0.0)),
        ("near_parents", dict(weight_decay=0.0)),
        ("decoupled", dict(weight_decay=2e-5)),
        ("l1", dict(l1=1e-4)),
    ):
        for seed in (0, 1):
            assert prefix_of(
                select_runs("extensions", entry=entry, seed=seed, **fields)[0],
                select_runs("extensions_1000", entry=entry, seed=seed)[0],
            )


def test_selection_table_pools_seeds_per_ranking_and_weight_decay(tmp_path, monkeypatch):
    import pandas as pd

    from synapses_study.writeup import tables
    from synapses_study.writeup.report import refresh
    from synapses_study.writeup.tables import IncompleteResultsError

    monkeypatch.setattr(
        tables, "missing_scores", lambda table, configs, rank_epochs: 0
    )  # a table of two rankings, complete as such

    rows = []
    for seed, accuracy in ((0, 0.90), (1, 0.92)):
        for k in (50, 100):
            for classifier in ("extra_trees", "linear_svm"):
                rows.append(
                    dict(
                        ranking="connections@1000",
                        weight_decay=0.001,
                        seed=seed,
                        k=k,
                        classifier=classifier,
                        test_acc=accuracy + k / 10000,
                    )
                )
    rows += [
        dict(ranking="ink", weight_decay=float("nan"), seed=-1, k=k, classifier=c, test_acc=0.8)
        for k in (50, 100)
        for c in ("extra_trees", "linear_svm")
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "feature_selection.csv", index=False)
    text = refresh("<!-- table: selection -->\n<!-- /table -->\n", results_dir=tmp_path)
    lines = text.splitlines()
    assert lines[1] == (
        "| ranking | seeds | extra trees, K=50 (%) | linear svm, K=50 (%) | extra trees, K=100 (%) | linear svm, "
        "K=100 (%) |"
    )
    assert (
        lines[3]
        == "| connections@1000, weight_decay=0.001 | 2 | 91.50 ± 1.41 | 91.50 ± 1.41 | 92.00 ± 1.41 | 92.00 ± 1.41 |"
    )
    assert lines[4] == "| ink | 1 | 80.00 | 80.00 | 80.00 | 80.00 |"
    with pytest.raises(IncompleteResultsError, match="python -m synapses_study.reading.selection"):
        refresh("<!-- table: selection -->\n<!-- /table -->\n", results_dir=tmp_path / "nowhere")


def test_selection_table_refuses_a_table_with_scores_missing(tmp_path):
    import pandas as pd

    from synapses_study.reading import selection
    from synapses_study.writeup.tables import IncompleteResultsError, selection_table

    rows = [
        dict(ranking=name, weight_decay=wd, seed=seed, k=k, classifier=c, test_acc=0.5)
        for name, wd, seed, _ in selection.rankings([])
        for k in selection.BUDGETS
        for c in selection.CLASSIFIERS
    ]
    table = pd.DataFrame(rows)
    assert len(table) == 5 * 4 and selection.missing_scores(table, []) == 0  # ink, variance, three random draws
    assert selection.missing_scores(table.iloc[1:], []) == 1
    table.iloc[3:].to_csv(tmp_path / "feature_selection.csv", index=False)
    with pytest.raises(IncompleteResultsError, match=r"score\(s\) missing from .*resumes it"):
        selection_table(tmp_path / "feature_selection.csv")  # the reproduction's rankings: 200 expected


@pytest.mark.parametrize(
    "values, window, epoch",
    [
        ([1, 1, -5, -5, -5], 2, 2),  # trailing means 1, 1, -2, -5, -5
        ([1, -3, -3, 1, -3], 1, 4),  # dips below and comes back: only the last stretch counts
        ([1, -3, -3, 1, -3], 2, 1),  # the window smooths the bump away: -1, -3, -1, -1
        ([-1, -1], 3, 0),
        ([-1, 1], 1, None),
        ([-1, 0], 1, None),  # 0 is not below
    ],
)
def test_settles_below_zero(values, window, epoch):
    from synapses_study.measures.analysis import settles_below_zero

    assert settles_below_zero(np.array(values, dtype=float), window) == epoch


def test_no_line_of_the_write_up_starts_with_a_value_marker():
    # a line that starts with an HTML comment opens an HTML block in CommonMark: the rest of
    # the line is passed through raw and glued to the line before ("and0.467")
    import re
    from pathlib import Path

    for page in ("regularization.md", "README.md"):
        lines = (Path(__file__).parents[2] / page).read_text().splitlines()
        starts = [n + 1 for n, line in enumerate(lines) if re.match(r"^\s*<!--v ", line)]
        assert not starts, (page, starts)


def test_every_p_value_in_the_write_up_belongs_to_a_declared_family():
    """A p value ("p = 0.05", "p < 0.001", "Holm p") may appear only inside a fact that
    :mod:`synapses_study.reading.families` assigns to a family, or in the generated families table;
    every family's facts exist and are used."""
    import re

    from synapses_study.reading.families import FAMILIES, family_facts
    from synapses_study.writeup.facts import FACTS, FAMILY_COMPARISONS

    text = _write_up()
    owned = family_facts()
    assert set(owned) <= set(FACTS) and {f.name for f in FAMILIES} == set(FAMILY_COMPARISONS)
    text = re.sub(r"<!-- table: families -->.*?<!-- /table -->", "", text, flags=re.DOTALL)
    for name in re.findall(r"<!--v fact:(\w+) -->", text):
        body = re.search(rf"<!--v fact:{name} -->(.*?)<!--/v-->", text, flags=re.DOTALL).group(1)
        if re.search(r"\bp [=<] ?\d", body):
            assert name in owned, f"fact {name} quotes a p value but belongs to no family"
    outside = re.sub(r"<!--v [^>]*-->.*?<!--/v-->", "", text, flags=re.DOTALL)
    assert not re.findall(r"\bp [=<] ?\d", outside), "a p value typed outside any fact"
    for fact_name in owned:
        assert f"<!--v fact:{fact_name} -->" in _write_up(), f"{fact_name} is declared but never quoted"


def test_a_family_must_compute_exactly_its_declared_members():
    from synapses_study.reading.stats import paired
    from synapses_study.writeup.facts import _checked

    one = paired("decay_1000", np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="declared"):
        _checked("accuracy", [one])
