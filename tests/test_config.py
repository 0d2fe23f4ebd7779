import json

import pytest

from synapses.config import ConfigError, ExperimentConfig


def test_defaults_are_the_original_protocol():
    c = ExperimentConfig()
    assert (c.model, c.batch_size, c.lr, c.momentum, c.epsilon, c.zeta) == ("SparseNet", 128, 0.01, 0.5, 11.0, 0.3)
    assert (c.weight_decay, c.evolution, c.regrowth, c.optimizer) == (0.0, "epoch", "uniform", "sgd")


def test_json_round_trip(tmp_path):
    c = ExperimentConfig(epochs=7, weight_decay=1e-3, weight_decay_end=1e-2, decay_mode="decoupled", l1=1e-5)
    path = tmp_path / "c.json"
    path.write_text(c.to_json())
    assert ExperimentConfig.from_json(path) == c
    assert json.loads(c.to_json())["weight_decay_end"] == 1e-2


def test_unknown_keys_are_rejected_naming_them():
    with pytest.raises(ConfigError, match=r"sweep.yaml: unknown key\(s\) 'wieght_decay'"):
        ExperimentConfig.from_dict({"wieght_decay": 1e-3}, where="sweep.yaml")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "epochs must be > 0"),
        ({"epochs": 1.5}, "epochs must be int"),
        ({"weight_decay": -1e-3}, "weight_decay must be >= 0"),
        ({"weight_decay": "1e-3"}, "weight_decay must be float"),
        ({"zeta": 1.5}, r"zeta must be in \[0, 1\]"),
        ({"model": "ResNet"}, "model must be one of 'SparseNet', 'EvolNet'"),
        ({"evolution": "pass"}, "evolution='pass' goes with model='EvolNet'"),
        ({"model": "EvolNet", "evolution": "pass"}, "needs evolution_proba > 0"),
        ({"decay_mode": "decoupled", "weight_decay": 1.0}, "must be < 1"),
        ({"reset_optimizer_state": 1}, "reset_optimizer_state must be bool"),
    ],
)
def test_bad_values_are_rejected(changes, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig.from_dict(changes)


def test_run_id_is_stable_readable_and_unique():
    a = ExperimentConfig(weight_decay=1e-3, seed=2)
    assert a.run_id() == ExperimentConfig(weight_decay=0.001, seed=2).run_id()
    assert a.run_id().startswith("sparsenet_e155_wd0.001_s2_")
    assert ExperimentConfig(weight_decay=0).run_id() == ExperimentConfig(weight_decay=0.0).run_id()
    others = {ExperimentConfig(weight_decay=1e-3, seed=2, lr=0.02).run_id(), ExperimentConfig(weight_decay=1e-3, seed=3).run_id()}
    assert a.run_id() not in others and len(others) == 2


def test_linear_weight_decay_schedule():
    c = ExperimentConfig(epochs=11, weight_decay=1e-3, weight_decay_end=1e-2)
    assert c.weight_decay_at(1) == pytest.approx(1e-3)
    assert c.weight_decay_at(6) == pytest.approx(5.5e-3)
    assert c.weight_decay_at(11) == pytest.approx(1e-2)
    assert ExperimentConfig(weight_decay=3e-4).weight_decay_at(100) == 3e-4
