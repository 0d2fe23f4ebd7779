import json
import re

import pytest

from synapses_study.setup.config import ConfigError, ExperimentConfig


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
        ({"model": "ResNet"}, "model must be one of 'SparseNet', 'EvolNet', 'Dense'"),
        ({"weight_decay": float("nan")}, "weight_decay must be a finite number, got nan"),
        ({"lr": float("inf")}, "lr must be a finite number"),
        ({"momentum": float("nan")}, "momentum must be a finite number"),
        ({"l1": float("nan")}, "l1 must be a finite number"),
        ({"weight_decay_end": float("nan")}, "weight_decay_end must be a finite number"),
        ({"epsilon": float("inf")}, "epsilon must be a finite number"),
        ({"epsilon": 1000}, r"epsilon=1000 asks for more connections than the 784 x 512 layer 0"),
        ({"epsilon": [11, 11, 11]}, "epsilon has 3 values for 2 hidden layers"),
        ({"epsilon": [11, -1]}, r"epsilon\[1\] must be > 0"),
        ({"seed": 10**20}, r"seed must be in \[0, 2\*\*32\)"),
        ({"seed": -1}, r"seed must be in \[0, 2\*\*32\)"),
        ({"hidden": []}, "hidden must be a non-empty list"),
        ({"hidden": [512, 0]}, "hidden must be a non-empty list of positive widths"),
        ({"hidden": [512.5]}, "hidden must be a list of int"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"evolution_proba": 0.5}, "evolution_proba applies to model='EvolNet' only"),
        ({"parent_fraction": 0.2}, "parent_fraction applies to regrowth='near_parents' only"),
        ({"optimizer": "adam", "momentum": 0.9}, "momentum applies to optimizer='sgd' only"),
        ({"model": "Dense"}, "model='Dense' has nothing to evolve"),
        ({"model": "Dense", "evolution": "off", "epsilon": 20}, "epsilon applies to SET layers only"),
        ({"topology_from": "some_run"}, "topology_from keeps the connections fixed"),
        ({"topology_layers": [0]}, "topology_layers applies with topology_from only"),
        ({"evolution": "off", "topology_from": "r", "topology_layers": [2]}, r"each in 0\.\.1; got \[2\]"),
        (
            {"evolution": "off", "topology_from": "r", "topology_layers": [1, 0]},
            "distinct SET layer indices in increasing order",
        ),
        ({"evolution": "off", "topology_from": "r", "topology_layers": []}, "distinct SET layer indices"),
        ({"evolution": "off", "topology_from": "r", "topology_layers": [0.5]}, "topology_layers must be"),
        ({"evolution": "pass"}, "evolution='pass' goes with model='EvolNet'"),
        ({"model": "EvolNet", "evolution": "pass"}, "needs evolution_proba > 0"),
        ({"decay_mode": "decoupled", "weight_decay": 1.0}, "must be < 1"),
        ({"reset_optimizer_state": 1}, "reset_optimizer_state must be bool"),
        ({"device": "gpu"}, "device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
        ({"device": "cuda:x"}, "device must be 'cpu', 'cuda' or 'cuda:N'"),
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
    others = {
        ExperimentConfig(weight_decay=1e-3, seed=2, lr=0.02).run_id(),
        ExperimentConfig(weight_decay=1e-3, seed=3).run_id(),
    }
    assert a.run_id() not in others and len(others) == 2


def test_linear_weight_decay_schedule():
    c = ExperimentConfig(epochs=11, weight_decay=1e-3, weight_decay_end=1e-2)
    from synapses_study.training.decay import WeightDecayPolicy

    policy = WeightDecayPolicy.of(c)
    assert policy.at(1) == pytest.approx(1e-3)
    assert policy.at(6) == pytest.approx(5.5e-3)
    assert policy.at(11) == pytest.approx(1e-2)
    assert WeightDecayPolicy.of(ExperimentConfig(weight_decay=3e-4)).at(100) == 3e-4
    assert policy.optimizer_coefficient(6) == policy.at(6)
    assert WeightDecayPolicy.of(c.replace(decay_mode="decoupled")).optimizer_coefficient(6) == 0.0


def test_new_fields_keep_every_committed_run_id():
    # Fields added later must not move existing results: their defaults stay out of the id.
    assert (
        ExperimentConfig(weight_decay=1e-3, seed=2).run_id()
        == ExperimentConfig(weight_decay=1e-3, seed=2, hidden=[512, 128], dropout=0).run_id()
    )
    big = ExperimentConfig(hidden=[1000, 1000, 1000], epsilon=20, dropout=0.3)
    assert big.run_id().startswith("sparsenet-1000-1000-1000_e155_wd0_drop0.3_s0_")


def test_a_cuda_run_has_an_id_of_its_own_and_a_cpu_run_keeps_its_id():
    cpu = ExperimentConfig(weight_decay=1e-3, seed=2)
    assert cpu.run_id() == ExperimentConfig(weight_decay=1e-3, seed=2, device="cpu").run_id()
    cuda = ExperimentConfig(weight_decay=1e-3, seed=2, device="cuda")
    assert cuda.run_id().startswith("sparsenet_e155_wd0.001_cuda_s2_") and cuda.run_id() != cpu.run_id()
    assert ExperimentConfig(device="cuda:1").run_id().startswith("sparsenet_e155_wd0_cuda1_s0_")


def test_list_fields_round_trip_through_json(tmp_path):
    config = ExperimentConfig(hidden=[300, 100], epsilon=[20, 5])
    assert config.hidden == (300, 100) and config.epsilon == (20.0, 5.0)
    path = tmp_path / "c.json"
    path.write_text(config.to_json())
    assert ExperimentConfig.from_json(path) == config
    assert config.layer_epsilons() == (20.0, 5.0) and ExperimentConfig().layer_epsilons() == (11.0, 11.0)


def test_each_field_is_declared_and_documented_in_exactly_one_section():
    from dataclasses import fields

    from synapses_study.setup.config import ALL_SECTIONS, field_help

    owners = {}
    for section in ALL_SECTIONS:
        own = section.__dict__.get("__annotations__", {})
        documented = (section.__doc__ or "").split("Attributes:", 1)[1]
        for name in own:
            assert name not in owners, f"{name} in {owners.get(name)} and {section.__name__}"
            owners[name] = section.__name__
            entries = re.findall(r"(?m)^ {8}([a-z0-9_, ]+):", documented)
            assert any(name in entry.replace(" ", "").split(",") for entry in entries), f"{name}: {section.__name__}"
    # the config is the sections' fields: the core's, then each later section's, in order
    assert [f.name for f in fields(ExperimentConfig)] == [
        name for section in ALL_SECTIONS for name in section.__dict__.get("__annotations__", {})
    ]
    assert set(field_help()) == set(owners)


def test_the_run_id_is_the_sections_tags_in_order():
    config = ExperimentConfig(
        epochs=3,
        input_regrowth_scale=0.5,
        input_lr_factor=0.1,
        blank_noise=0.1,
        random_shift=2,
        record_pruning=True,
        record_lifetimes=True,
        record_gradients=True,
        train_size=100,
    )
    parts = config.run_id().split("_")
    assert parts[:-2] == [
        "sparsenet",
        "e3",
        "wd0",
        "regrow0.5",
        "lr1x0.1",
        "noise0.1",
        "shift2",
        "rec",
        "life",
        "grad",
        "subset",
    ]
    assert parts[-2] == "s0" and len(parts[-1]) == 8


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"random_shift": 9}, r"random_shift must be a whole number of pixels in 0..8, got 9"),
        ({"blank_noise": -0.1}, r"blank_noise must be >= 0, got -0.1"),
        ({"input_lr_factor": 0.0}, r"input_lr_factor must be > 0, got 0.0"),
        ({"model": "Dense", "evolution": "off", "input_lr_factor": 2.0}, "input_lr_factor applies to SET layers only"),
        ({"record_weight_mass": False}, "record_weight_mass applies with record_pruning only"),
    ],
)
def test_a_section_refuses_its_own_bad_settings(fields, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig(**fields)
