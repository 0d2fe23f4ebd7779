"""The forecast (python -m synapses_study.forecast): from a configuration and the committed
constants alone, for any valid demo-net configuration, saying plainly what it does not model;
and the scoring's baselines on synthetic series."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from synapses_study.forecast import predict as forecast_module
from synapses_study.forecast.model import Constants, pixel_statistics, simulate
from synapses_study.forecast.predict import forecast, main
from synapses_study.forecast.score import early_rule_rho, trend_baseline
from synapses_study.runs.run_dir import RunDir
from synapses_study.setup.config import ExperimentConfig

SHORT = dict(epochs=60)
FIELDS = ("run_id", "crosses", "crossing_epoch", "crossing_interval", "rho_end", "rho_end_interval", "outside_model")


@pytest.fixture(autouse=True)
def few_streams(monkeypatch):
    monkeypatch.setattr(forecast_module, "STREAMS", 2)  # the tests check fields, not precision


def test_the_committed_constants_load_and_name_their_fitting_runs():
    constants = Constants.load()
    assert constants.rate > 0 and constants.slowdown_epochs > 0 and constants.learned_spread > 0
    assert len(constants.fitted_on) >= 10 and constants.crossing_tolerance > 0


def test_a_forecast_reads_no_run_folder(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the forecast opened a run folder")

    monkeypatch.setattr(RunDir, "__init__", refuse)
    found = forecast(ExperimentConfig(inputs="scaled", **SHORT))
    assert found.outside_model is None and found.rho_end is not None
    low, high = found.rho_end_interval
    assert low <= found.rho_end <= high


@pytest.mark.parametrize(
    "fields",
    [
        dict(zeta=0.1),
        dict(epsilon=20.0),
        dict(weight_decay=3e-3),
        dict(blank_noise=0.2, inputs="scaled"),
        dict(random_shift=2, inputs="scaled"),
        dict(input_regrowth_scale=7.0),
        dict(input_lr_factor=0.01, inputs="unit"),
        dict(lr=0.05, momentum=0.9, batch_size=64),
    ],
    ids=lambda f: ",".join(f),
)
def test_any_valid_demo_net_configuration_gets_a_forecast(fields):
    found = forecast(ExperimentConfig(**SHORT, **fields))
    assert found.outside_model is None and math.isfinite(found.rho_end) and found.crosses in (True, False)
    if found.crosses:
        low, high = found.crossing_interval
        assert 1 <= low <= found.crossing_epoch <= high


@pytest.mark.parametrize(
    "fields, named",
    [
        (dict(hidden=(1000, 1000, 1000)), "hidden"),
        (dict(optimizer="adam", momentum=0.5), "optimizer"),
        (dict(regrowth="near_parents"), "regrowth"),
        (dict(dropout=0.3), "dropout"),
        (dict(model="EvolNet", evolution="pass", evolution_proba=0.1), "model"),
    ],
)
def test_a_configuration_outside_the_model_says_so_and_forecasts_nothing(fields, named):
    try:
        config = ExperimentConfig(**SHORT, **fields)
    except Exception as error:  # a combination the config refuses is no forecast's business
        pytest.skip(f"not a valid config: {error}")
    found = forecast(config)
    assert found.outside_model is not None and named in found.outside_model
    assert found.crosses is None and found.rho_end is None


def test_the_model_separates_the_regimes_the_runs_show():
    """Large newborns on fast scaled inputs invert; tiny newborns keep the topology positive."""
    constants = Constants.load()
    lottery = simulate(ExperimentConfig(epochs=400, inputs="scaled", input_regrowth_scale=3.0), constants)
    small = simulate(ExperimentConfig(epochs=400, inputs="scaled", input_regrowth_scale=0.05), constants)
    assert lottery.rho[-10:].mean() < 0 < small.rho[-10:].mean()


def test_constant_inputs_give_no_exposure():
    stats = pixel_statistics(ExperimentConfig(inputs="standardized"))
    never = stats.ink == 0
    assert never.any() and (stats.exposure[never] == 0).all() and (stats.exposure[~never] > 0).all()
    noisy = pixel_statistics(ExperimentConfig(inputs="scaled", blank_noise=0.1))
    assert noisy.exposure[never] == pytest.approx(np.full(int(never.sum()), 0.01))


def test_the_command_prints_one_json_object_per_run_line(tmp_path, capsys):
    sweep = tmp_path / "two.yaml"
    sweep.write_text("description: two\nbase: {epochs: 40, inputs: scaled}\ngrid: {seed: [0, 1]}\n")
    assert main([str(sweep), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and all(tuple(line) == FIELDS for line in lines)
    assert lines[0]["run_id"] != lines[1]["run_id"] and lines[0]["rho_end"] == lines[1]["rho_end"]


def test_a_json_config_is_forecast_and_bad_files_are_one_line_errors(tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"epochs": 40, "hidden": [300, 100]}))
    assert main([str(config)]) == 0
    assert "outside the model: hidden=(300, 100)" in capsys.readouterr().out
    for name, text, message in [
        ("missing.json", None, "no such file"),
        ("broken.json", "{", "is not valid JSON"),
        ("bad.json", json.dumps({"epochs": -1}), "epochs"),
        ("notes.txt", "x", "give a sweep file"),
    ]:
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        done = subprocess.run(
            [sys.executable, "-m", "synapses_study.forecast.predict", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_trend_baseline_extends_a_straight_line():
    epochs = np.arange(1, 401)
    falling = 0.3 - 0.002 * epochs  # meets 0 at epoch 150
    assert trend_baseline(falling) == (True, 150)
    assert trend_baseline(0.3 - 0.0001 * epochs) == (False, None)
    assert trend_baseline(falling[:80]) is None  # shorter than its window: no baseline


def _synthetic_run(death: np.ndarray, epochs: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(topology (epochs + 1, 784), pruned (epochs, 784))`` of a run whose pixels die with
    probability ``death`` ``(784,)`` per epoch and are regrown uniformly, as the files hold
    them (row ``e`` of the topology: the connections during epoch ``e``; rows 0 and 1 alike)."""
    rng = np.random.default_rng(seed)
    rows, pruned = [np.full(784, 20), np.full(784, 20)], []
    for epoch in range(1, epochs + 1):
        deaths = rng.binomial(rows[epoch], death)
        pruned.append(deaths)
        if epoch < epochs:
            rows.append(rows[epoch] - deaths + rng.multinomial(deaths.sum(), np.full(784, 1 / 784)))
    return np.stack(rows), np.stack(pruned)


def test_the_early_rule_reads_the_equilibrium_of_the_runs_own_rates(monkeypatch):
    from synapses_study.forecast import score as forecast_score

    ink = np.linspace(0, 1, 784)
    monkeypatch.setattr(forecast_score, "training_ink", lambda: ink)
    assert early_rule_rho(*_synthetic_run(0.5 - 0.4 * ink)) > 0.5  # inked pixels die less: follows the ink
    assert early_rule_rho(*_synthetic_run(0.1 + 0.4 * ink)) < -0.5  # inked pixels die more: inverted


def test_the_score_table_counts_hits_and_lists_pending_runs(tmp_path, small_mnist):
    from synapses_study.forecast.score import hits_table, score, table
    from synapses_study.training.engine import run_experiment

    done = ExperimentConfig(epochs=12, record_pruning=True, record_weight_mass=False)
    pending = done.replace(seed=1)
    run_experiment(done, tmp_path, data=small_mnist, progress=False)
    lines = []
    for config, crosses in ((done, True), (pending, False)):
        entry = dict(
            run_id=config.run_id(),
            crosses=crosses,
            crossing_epoch=5 if crosses else None,
            crossing_interval=[1, 12] if crosses else None,
            rho_end=0.0,
            rho_end_interval=[-1.0, 1.0],
            outside_model=None,
        )
        lines.append(json.dumps(entry))
    forecasts = tmp_path / "forecasts.jsonl"
    forecasts.write_text("\n".join(lines) + "\n")
    scored = score(forecasts, tmp_path)
    assert scored[0].observed is not None and scored[1].observed is None
    text = table(scored)
    assert "Pending (not finished): 1 of 2 run(s)" in text
    assert text.count(done.run_id()) == 1 and pending.run_id() not in text
    crossed = scored[0].observed.crossing is not None
    hits = hits_table(scored)
    # 12 epochs: too short for the baselines' window (epochs 51-100), which then say nothing
    assert f"| forecast | {int(crossed)} of 1 | {int(crossed)} of {int(crossed)} | 1 of 1 |" in hits
    assert "| trend of epochs 51-100 | 0 of 0 |" in hits and "| early rule | 0 of 0 |" in hits
    assert f"| no decay crosses | {int(crossed)} of 1 |" in hits


def test_hits_are_counted_from_each_runs_own_crossing():
    """Synthetic runs with known crossings: the counts are literal, not the scorer's own reading."""
    from synapses_study.forecast.score import Observed, Scored, hits_table

    flat = np.zeros((401, 784))

    def run(crossing, rho_end):
        return Observed(crossing, rho_end, np.full(400, rho_end), flat, flat[1:])

    def forecast(crosses, epoch=None):
        return dict(
            crosses=crosses,
            crossing_epoch=epoch,
            crossing_interval=[epoch - 5, epoch + 5] if crosses else None,
            rho_end=0.1,
            rho_end_interval=[0.0, 0.2],
        )

    scored = [
        Scored("a", run(150, -0.2), forecast(True, 148), 0.0),  # crosses in its interval; rho outside
        Scored("b", run(300, -0.1), forecast(True, 100), 0.0),  # crosses outside its interval
        Scored("c", run(None, 0.15), forecast(True, 100), 1e-3),  # forecast crosses, run does not
        Scored("d", run(None, 0.15), forecast(False), 0.0),  # right, rho inside
        Scored("e", None, forecast(True, 100)),  # pending
    ]
    hits = hits_table(scored)
    assert "| forecast | 3 of 4 | 1 of 2 | 2 of 4 |" in hits
    assert "| no decay crosses | 3 of 4 |" in hits  # d has no decay but did not cross


def test_the_replicate_spread_and_the_after_the_fact_widening():
    """Literal replicates: sd and half range by hand; intervals widened from the committed
    tolerance (5 epochs, 0.02) to two sd (28.3 epochs, 0.2) take in a run 12 epochs and 0.1 out."""
    from synapses_study.forecast.model import Constants
    from synapses_study.forecast.score import Observed, Scored, replicate_rows

    observed = [(0, 90, -0.1), (1, 110, 0.1), (2, None, 0.0)]  # sd 14.14 epochs and 0.1
    flat = np.zeros((401, 784))

    def scored(crossing, rho_end):
        run = Observed(crossing, rho_end, np.full(400, rho_end), flat, flat[1:])
        interval = dict(crossing_interval=[95, 105], rho_end_interval=[0.0, 0.1])
        return Scored("condition_s0_digest", run, dict(crosses=True, crossing_epoch=100, rho_end=0.05, **interval), 0.0)

    committed = Constants(rate=1.0, slowdown_epochs=1.0, learned_spread=1.0, crossing_tolerance=5, rho_tolerance=0.02)
    rows = replicate_rows(observed, [scored(117, 0.2), scored(150, 0.5)], committed)
    assert rows["crossing epochs"] == "90, 110, none"
    assert rows["crossing epoch, sd"] == "14.1 (1 without a crossing left out)"
    assert rows["ρ at the end, sd"] == "0.100" and rows["half range"] == "10 epochs, 0.100 in ρ"
    assert rows["two sd"] == "28.3 epochs, 0.200 in ρ"
    assert (
        rows["the test's conditions: two seeds' crossing epochs apart"]
        == "33 epochs (1 conditions where both seeds cross)"
    )
    # widened by 28.3 - 5 epochs and 0.2 - 0.02: 117 and 0.2 fall inside, 150 and 0.5 do not
    assert (
        rows["forecast hits, intervals widened to two sd (after the fact)"]
        == "crossing epoch 1 of 2, ρ at the end 1 of 2"
    )
