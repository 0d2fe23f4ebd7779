"""The mechanism's interventions (regrowth scale, first-layer learning rate, blank-pixel
noise, random shifts) and the lifetime record, through the engine on real MNIST."""

import numpy as np
import pandas as pd
import pytest
import torch

from synapses_study.runs.lifetimes import read_lifetimes
from synapses_study.runs.run_dir import RunDir
from synapses_study.runs.run_files import DamagedFileError, load_model_state, read_pruning, read_topology
from synapses_study.setup.augment import Augmentation, shift_images
from synapses_study.setup.config import ConfigError, ExperimentConfig
from synapses_study.training.build import build_model, build_optimizer
from synapses_study.training.decay import WeightDecayPolicy
from synapses_study.training.engine import run_experiment

INTERVENTIONS = dict(input_regrowth_scale=0.05, input_lr_factor=10.5, blank_noise=0.1, random_shift=2)


def test_defaults_keep_every_existing_run_id():
    # the committed results are found by these ids: a new field must not move them
    assert ExperimentConfig().run_id() == "sparsenet_e155_wd0_s0_44136fa3"
    assert ExperimentConfig(epochs=1000, record_pruning=True, record_weight_mass=False, inputs="scaled").run_id() == (
        "sparsenet_e1000_wd0_scaled_rec_s0_ac7f637a"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(input_regrowth_scale=0.0), "input_regrowth_scale must be > 0"),
        (dict(input_lr_factor=-1.0), "input_lr_factor must be > 0"),
        (dict(blank_noise=-0.1), "blank_noise must be >= 0"),
        (dict(random_shift=9), r"random_shift must be a whole number of pixels in 0..8"),
        (dict(random_shift=1.5), "random_shift must be int"),
        (dict(record_lifetimes=True, evolution="off"), "record_lifetimes needs evolution='epoch'"),
        (dict(input_regrowth_scale=0.1, evolution="off"), "input_regrowth_scale applies to evolution='epoch' only"),
        (dict(model="Dense", evolution="off", input_lr_factor=2.0), "input_lr_factor applies to SET layers only"),
    ],
)
def test_bad_intervention_values_are_refused_by_name(change, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig(**change)


def test_each_intervention_is_in_the_run_id():
    run_id = ExperimentConfig(record_lifetimes=True, **INTERVENTIONS).run_id()
    for part in ("regrow0.05", "lr1x10.5", "noise0.1", "shift2", "life"):
        assert f"_{part}_" in run_id


def test_shift_images_moves_content_and_fills_the_border():
    image = torch.arange(784, dtype=torch.float32).reshape(1, 784) + 1
    shifted = shift_images(image.repeat(3, 1), torch.tensor([[0, 0], [2, -1], [-3, 3]]), blank=-5.0).reshape(3, 28, 28)
    original = image.reshape(28, 28)
    assert torch.equal(shifted[0], original)
    assert (
        torch.equal(shifted[1, 2:, :27], original[:26, 1:])
        and (shifted[1, :2] == -5).all()
        and (shifted[1, :, 27] == -5).all()
    )
    assert (
        torch.equal(shifted[2, :25, 3:], original[3:, :25])
        and (shifted[2, 25:] == -5).all()
        and (shifted[2, :, :3] == -5).all()
    )


def test_blank_noise_touches_only_blank_pixels_and_is_zero_mean(small_mnist):
    images = small_mnist.train_x[:500]
    blank = float(images.min())
    noisy = Augmentation(0, 0.1, blank)(images, torch.Generator().manual_seed(0))
    inked = images != blank
    assert torch.equal(noisy[inked], images[inked])
    added = noisy[~inked] - blank
    assert abs(float(added.mean())) < 0.002 and abs(float(added.std()) - 0.1) < 0.002


def test_input_lr_factor_scales_the_first_layers_weight_step_only(small_mnist):
    base, fast = ExperimentConfig(), ExperimentConfig(input_lr_factor=4.0)
    steps = {}
    for config in (base, fast):
        torch.manual_seed(0)
        model = build_model(config, torch.Generator().manual_seed(0))
        optimizer = build_optimizer(config, model, WeightDecayPolicy.of(config))
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        torch.nn.functional.nll_loss(model(small_mnist.train_x[:64]), small_mnist.train_y[:64]).backward()
        optimizer.step()
        steps[config.input_lr_factor] = {name: p.detach() - before[name] for name, p in model.named_parameters()}
    for name, step in steps[1.0].items():
        factor = 4.0 if name == "set_layers.0.weight" else 1.0
        torch.testing.assert_close(steps[4.0][name], factor * step, rtol=1e-4, atol=1e-7)  # w + step rounds to float32


def test_regrowth_scale_scales_only_the_first_layers_newborns(tmp_path, small_mnist):
    plain = ExperimentConfig(epochs=2, record_lifetimes=True)
    small = plain.replace(input_regrowth_scale=0.05)
    a = RunDir(run_experiment(plain, tmp_path, data=small_mnist, progress=False))
    b = RunDir(run_experiment(small, tmp_path, data=small_mnist, progress=False))
    life_a, life_b = read_lifetimes(a.lifetimes_file), read_lifetimes(b.lifetimes_file)
    # epoch 1 is the same run; the newborns of epoch 2 sit on the same pairs, 0.05 times as large
    assert np.array_equal(life_a.weights[0], life_b.weights[0])
    assert np.array_equal(life_a.born_keys[0], life_b.born_keys[0])
    born_a, born_b = life_a.born_weights[0].astype(np.float64), life_b.born_weights[0].astype(np.float64)
    np.testing.assert_allclose(born_b, 0.05 * born_a, rtol=2e-3, atol=1e-7)
    state_a, state_b = load_model_state(a.model_file), load_model_state(b.model_file)
    assert torch.equal(state_a["set_layers.1.connections"], state_b["set_layers.1.connections"])


def test_lifetime_record_matches_the_network_it_describes(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=3, record_lifetimes=True, record_pruning=True, record_weight_mass=False)
    run = RunDir(run_experiment(config, tmp_path, data=small_mnist, progress=False))
    life = read_lifetimes(run.lifetimes_file)
    final = load_model_state(run.model_file)
    n = final["set_layers.0.weight"].numel()
    assert life.epochs == 3 and len(life.born_keys) == 2 and life.initial_keys.shape == (n,)
    # the pairs during the last epoch are the final network's (pruning marks, it does not move)
    connections = final["set_layers.0.connections"]
    assert np.array_equal(life.keys_during(3), (connections[:, 1] * 784 + connections[:, 0]).numpy())
    # pruned slots are zero in the final network, the others hold the recorded weight
    pruned = life.pruned_mask(3)
    assert np.array_equal(pruned, final["set_layers.0.pruned"].numpy())
    weights = final["set_layers.0.weight"].numpy()
    assert (weights[pruned] == 0).all()
    assert np.array_equal(weights[~pruned].astype(np.float16), life.weights[2][~pruned])
    # per pixel, the record's pruned slots are pruning.npz's counts; thresholds bound them
    pruned_counts, _ = read_pruning(run.pruning_file)
    for epoch in (1, 2, 3):
        mask = life.pruned_mask(epoch)
        inputs = life.keys_during(epoch)[mask] % 784
        assert np.array_equal(np.bincount(inputs, minlength=784), pruned_counts[epoch - 1])
        w = life.weights[epoch - 1].astype(np.float32)
        theta_pos, theta_neg = life.thresholds[epoch - 1]
        assert w[mask & (w >= 0)].max() <= np.float16(theta_pos) and (w[~mask & (w > 0)] >= np.float16(theta_pos)).all()
        assert (-w[mask & (w < 0)]).max() <= np.float16(theta_neg)
    # births: epoch 1 for the initial connections, epoch 3 for those moved at its start
    born = life.birth_epochs(3)
    assert set(np.unique(born)) <= {1, 2, 3} and (born[life.pruned_mask(2)] == 3).all()
    assert np.array_equal(read_topology(run.topology_file)[3], np.bincount(life.keys_during(3) % 784, minlength=784))


@pytest.mark.parametrize("name", ["lifetimes", "augmented"])
def test_interrupted_intervention_runs_resume_to_identical_files(tmp_path, small_mnist, name):
    config = {
        "lifetimes": ExperimentConfig(epochs=3, record_lifetimes=True, input_regrowth_scale=0.1),
        "augmented": ExperimentConfig(epochs=3, blank_noise=0.05, random_shift=2, input_lr_factor=2.0, inputs="scaled"),
    }[name]
    straight = run_experiment(config, tmp_path / "straight", data=small_mnist, progress=False)
    resumed = run_experiment(config, tmp_path / "resumed", data=small_mnist, progress=False, stop_after=1)
    run_experiment(config, tmp_path / "resumed", data=small_mnist, progress=False)
    a, b = (pd.read_csv(d / "metrics.csv.xz").drop(columns="seconds") for d in (straight, resumed))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for file in ("model.pt", "topology.npz") + (("lifetimes.npz",) if config.record_lifetimes else ()):
        assert (straight / file).read_bytes() == (resumed / file).read_bytes(), file


def test_augmentation_changes_training_but_not_data_order_or_topology_draws(tmp_path, small_mnist):
    plain = run_experiment(ExperimentConfig(epochs=1, inputs="scaled"), tmp_path, data=small_mnist, progress=False)
    noisy = run_experiment(
        ExperimentConfig(epochs=1, inputs="scaled", blank_noise=0.1), tmp_path, data=small_mnist, progress=False
    )
    a, b = load_model_state(plain / "model.pt"), load_model_state(noisy / "model.pt")
    assert np.array_equal(read_topology(plain / "topology.npz")[0], read_topology(noisy / "topology.npz")[0])
    assert not torch.equal(a["set_layers.0.weight"], b["set_layers.0.weight"])


def test_a_damaged_lifetime_record_is_named(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=2, record_lifetimes=True)
    run = RunDir(run_experiment(config, tmp_path, data=small_mnist, progress=False))
    run.lifetimes_file.write_bytes(run.lifetimes_file.read_bytes()[:200])
    with pytest.raises(DamagedFileError, match="lifetimes.npz"):
        read_lifetimes(run.lifetimes_file)


def test_a_lifetime_record_refuses_a_layer_whose_keys_overflow_int32():
    from synapses import SETLayer
    from synapses_study.runs.lifetimes import LifetimeRecord

    layer = SETLayer(2**16 + 1, 2**15, epsilon=1, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="this layer has 2147516416 pairs"):
        LifetimeRecord.start(layer)


def test_a_run_resumes_all_three_records_as_an_uninterrupted_run_writes_them(tmp_path, small_mnist):
    config = ExperimentConfig(epochs=3, record_pruning=True, record_lifetimes=True, record_gradients=True)
    whole = RunDir(run_experiment(config, tmp_path / "whole", data=small_mnist, progress=False))
    run_experiment(config, tmp_path / "parts", data=small_mnist, progress=False, stop_after=2)
    parts = RunDir(run_experiment(config, tmp_path / "parts", data=small_mnist, progress=False))
    for name in ("pruning.npz", "lifetimes.npz", "gradients.npz"):
        assert (whole.path / name).read_bytes() == (parts.path / name).read_bytes(), name


def test_a_lifetime_record_shorter_than_the_checkpoint_is_named_on_resume(tmp_path, small_mnist):
    from synapses_study.runs.lifetimes import write_lifetimes

    config = ExperimentConfig(epochs=3, record_lifetimes=True)
    run = RunDir(run_experiment(config, tmp_path, data=small_mnist, progress=False, stop_after=2))
    write_lifetimes(run.lifetimes_file, read_lifetimes(run.lifetimes_file).truncated(1))
    with pytest.raises(DamagedFileError, match="lifetimes.npz holds 1 epochs, the checkpoint 2; delete the folder"):
        run_experiment(config, tmp_path, data=small_mnist, progress=False)
