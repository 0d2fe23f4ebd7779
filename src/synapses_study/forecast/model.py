"""A forecast of the first layer's topology from a configuration alone: a connection-level
birth-death simulation whose rates are functions of the configuration, not per-run constants.

Every first-layer connection carries a weight ``w`` (network units). Between prunings it
relaxes towards the weight it would learn, ``w*``, at a rate set by how much gradient its
input pixel receives, and coupled weight decay shrinks it:

    w <- (w* + (w - w*) exp(-r_i(t))) exp(-lambda),
    r_i(t) = K * lr_eff * exposure_i / (1 + t / T),

* ``exposure_i``: the variance of the pixel's network input over the training images as
  the run sees them (its ``inputs`` scale, shifts, blank-pixel noise) times the first
  layer's ``input_lr_factor``: a weight's gradient is ``delta * x_i``, and a constant input
  (a pixel blank in every image, whatever value the scale gives blank) moves its weights
  only as the bias beside it already moves, so such weights stay where they were born;
* ``lr_eff = lr / (1 - momentum) * steps_per_epoch``: SGD's step per epoch;
* ``1 / (1 + t / T)``: the error signal ``delta`` falls as the network learns;
* ``w*`` is drawn at birth, normal with standard deviation ``TAU * c * spread_i``: ``c`` the
  inputs' scale (0.3081 for ``scaled`` and ``standardized``, 1 for ``unit``: a network that
  sees inputs divided by ``c`` computes the same function with weights ``c`` times as large)
  and ``spread_i`` the pixel's standard deviation in [0, 1] units relative to the mean
  (an uninformative pixel has no weight to learn);
* ``lambda = lr * input_lr_factor * weight_decay * steps_per_epoch / (1 - momentum)``.

Each epoch then prunes the fraction ``zeta`` of connections with the smallest ``|w|`` (the
threshold, set by the whole population) and regrows as many on pixels drawn uniformly,
born with ``w ~ N(0, (input_regrowth_scale * sigma0)^2)``, ``sigma0`` the He standard
deviation. So a newborn's survival depends on its size against the threshold and on how
fast its pixel's gradient moves it towards ``w*``, and an established connection's hazard
on its ``|w|`` against the threshold, its age (how far it has relaxed) and its pixel's
exposure. The survivors per pixel give ``rho`` (Spearman with ink frequency) per epoch.

Three constants, ``K``, ``T`` and ``TAU``, are fitted once on named committed runs
(:mod:`synapses_study.forecast.fit`) and committed in ``forecast_constants.json``; the
forecast of a configuration reads nothing else (no run folder).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from synapses import erdos_renyi_n_params

from ..measures.survivors import crossing_epoch
from ..setup.config import ExperimentConfig
from ..setup.data import load_mnist, prepare_data

CONSTANTS_FILE = Path(__file__).with_name("forecast_constants.json")
INPUT_SCALE = {"scaled": 0.3081, "standardized": 0.3081, "unit": 1.0}
TRAIN_IMAGES = 60_000
# What the model describes: the demo net trained by the study's engine. Fields outside it
# (another network, optimizer, regrowth rule, dropout, L1, decoupled decay, EvolNet) make a
# forecast "outside the model", said plainly with the reason.
MODELLED = {
    "model": ("SparseNet",),
    "hidden": ((512, 128),),
    "optimizer": ("sgd",),
    "regrowth": ("uniform",),
    "evolution": ("epoch",),
    "decay_mode": ("coupled",),
}


@dataclass(frozen=True)
class Constants:
    """The fitted constants (see the module's docstring) and what they were fitted on."""

    rate: float  # K
    slowdown_epochs: float  # T
    learned_spread: float  # TAU, in units of sigma0 at unit inputs
    fitted_on: tuple[str, ...] = ()
    crossing_tolerance: float = 0.0  # epochs added to each side of the simulated range
    rho_tolerance: float = 0.0  # added to each side of the simulated range of rho at the end

    @classmethod
    def load(cls, path: Path = CONSTANTS_FILE) -> Constants:
        """The committed constants.

        Raises:
            FileNotFoundError: none committed yet (fit them: python -m synapses_study.forecast.fit).
            ValueError: the file is damaged or lacks a constant.
        """
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: fit the model first (python -m synapses_study.forecast.fit)")
        try:
            data = json.loads(path.read_text())
            found = cls(
                float(data["rate"]),
                float(data["slowdown_epochs"]),
                float(data["learned_spread"]),
                tuple(data.get("fitted_on", ())),
                float(data.get("crossing_tolerance", 0.0)),
                float(data.get("rho_tolerance", 0.0)),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path} is damaged ({error}); restore it from git") from None
        if not all(math.isfinite(v) and v > 0 for v in (found.rate, found.slowdown_epochs, found.learned_spread)):
            raise ValueError(f"{path}: the constants must be finite and positive; restore it from git")
        return found


@dataclass(frozen=True)
class PixelStatistics:
    """Per pixel, ``(784,)`` each: ``exposure`` (mean squared network input, times the first
    layer's lr factor), ``spread`` (standard deviation in [0, 1] units relative to its mean
    over pixels) and ``ink`` (ink frequency of the unshifted training images, what rho reads)."""

    exposure: np.ndarray
    spread: np.ndarray
    ink: np.ndarray


@cache
def _unit_images() -> np.ndarray:
    """``(60000, 28, 28)`` float32 training images in [0, 1]."""
    data = prepare_data(load_mnist(), inputs="unit")
    return data.train_x.numpy().reshape(-1, 28, 28)


def _shift_average(image: np.ndarray, radius: int) -> np.ndarray:
    """``(28, 28)`` per-pixel mean of a statistic over the uniform shifts of up to
    ``radius`` pixels per axis (uncovered border: 0, as the engine's shifts leave it blank)."""
    if radius == 0:
        return image
    total = np.zeros_like(image)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            moved = np.zeros_like(image)
            ys, yd = slice(max(dy, 0), 28 + min(dy, 0)), slice(max(-dy, 0), 28 + min(-dy, 0))
            xs, xd = slice(max(dx, 0), 28 + min(dx, 0)), slice(max(-dx, 0), 28 + min(-dx, 0))
            moved[ys, xs] = image[yd, xd]
            total += moved
    return total / (2 * radius + 1) ** 2


def pixel_statistics(config: ExperimentConfig) -> PixelStatistics:
    """What the model needs of the data as ``config`` trains on it (shifts and blank-pixel
    noise in expectation; the standardised inputs' offset on blank pixels included)."""
    images = _unit_images().astype(np.float64)
    mean, square, ink = images.mean(0), (images**2).mean(0), (images > 0).mean(0)
    shifted_mean = _shift_average(mean, config.random_shift)
    shifted_square = _shift_average(square, config.random_shift)
    shifted_blank = 1 - _shift_average(ink, config.random_shift)
    c = INPUT_SCALE[config.inputs]
    # A constant input moves its weights only as much as the bias beside it already does, so
    # what a pixel's weights learn from is its variance, the same for every input scale up
    # to c (the standardised inputs' offset changes nothing); blank-pixel noise adds to it.
    variance = np.maximum(shifted_square - shifted_mean**2, 0.0)
    exposure = variance / c**2 + shifted_blank * config.blank_noise**2
    spread = np.sqrt(variance)
    return PixelStatistics(
        (exposure * config.input_lr_factor).reshape(-1),
        (spread / spread.mean()).reshape(-1),
        ink.reshape(-1),  # the unshifted images' (rho is read against the study's ink frequency)
    )


def outside_model(config: ExperimentConfig) -> str | None:
    """Why ``config`` lies outside what the model describes, or ``None``."""
    for name, allowed in MODELLED.items():
        value = getattr(config, name)
        if value not in allowed:
            return f"{name}={value!r} (the model describes {name}={allowed[0]!r} only)"
    if config.dropout:
        return f"dropout={config.dropout} (the model has no dropout)"
    if config.l1:
        return f"l1={config.l1} (the model has no L1 penalty)"
    if config.weight_decay_end is not None:
        return "weight_decay_end (the model holds the decay constant)"
    if config.topology_from is not None or config.init_from is not None:
        return "init_from/topology_from (the model starts from a fresh network)"
    if not isinstance(config.epsilon, (int, float)):
        return "a per-layer epsilon (the model reads one epsilon)"
    if not 0 < config.zeta < 1:
        return f"zeta={config.zeta} (the model prunes a fraction strictly between 0 and 1)"
    if config.momentum >= 1:
        return f"momentum={config.momentum} (the model's step per epoch needs momentum < 1)"
    return None


@dataclass(frozen=True)
class Trajectory:
    """One simulated run: ``rho`` ``(epochs,)`` on survivors per epoch."""

    rho: np.ndarray

    @property
    def crossing(self) -> int | None:
        return crossing_epoch(self.rho)


def simulate(
    config: ExperimentConfig,
    constants: Constants,
    seed: int = 0,
    stats: PixelStatistics | None = None,
    epochs: int | None = None,
) -> Trajectory:
    """Simulate ``config``'s first layer for ``epochs`` (default ``config.epochs``) epochs
    with the random stream ``seed``; returns rho on survivors per epoch."""
    stats = stats if stats is not None else pixel_statistics(config)
    epochs = epochs if epochs is not None else config.epochs
    rng = np.random.default_rng(seed)
    n_inputs, hidden = 784, config.hidden[0]
    assert isinstance(config.epsilon, (int, float))  # outside_model refuses per-layer tuples
    eps = float(config.epsilon)
    n = erdos_renyi_n_params(n_inputs, hidden, eps, None)
    sigma0 = math.sqrt(2.0 / n_inputs)
    c = INPUT_SCALE[config.inputs]
    steps = math.ceil((config.train_size or TRAIN_IMAGES) / config.batch_size)
    lr_eff = config.lr / (1 - config.momentum) * steps
    decay = math.exp(-config.lr * config.input_lr_factor * config.weight_decay * steps / (1 - config.momentum))
    target_sd = constants.learned_spread * c * sigma0 * stats.spread
    ink_ranks = rankdata(stats.ink)
    pixel = rng.integers(0, n_inputs, n)
    weight = rng.normal(0.0, sigma0, n)
    target = rng.normal(0.0, 1.0, n) * target_sd[pixel]  # born at epoch 1
    n_pruned = int(round(config.zeta * n))
    rho = np.empty(epochs)
    newborn_sd = config.input_regrowth_scale * sigma0
    for epoch in range(1, epochs + 1):
        rate = constants.rate * lr_eff * stats.exposure[pixel] / (1 + epoch / constants.slowdown_epochs)
        weight = (target + (weight - target) * np.exp(-rate)) * decay
        pruned = np.argpartition(np.abs(weight), n_pruned)[:n_pruned]
        keep = np.ones(n, dtype=bool)
        keep[pruned] = False
        counts = np.bincount(pixel[keep], minlength=n_inputs)
        rho[epoch - 1] = _spearman_with(counts, ink_ranks)
        pixel[pruned] = rng.integers(0, n_inputs, n_pruned)
        weight[pruned] = rng.normal(0.0, newborn_sd, n_pruned)
        # born at the start of epoch + 1: what is left to learn shrinks as the network learns
        target[pruned] = (
            rng.normal(0.0, 1.0, n_pruned) * target_sd[pixel[pruned]] / (1 + epoch / constants.slowdown_epochs)
        )
    return Trajectory(rho)


def _spearman_with(values: np.ndarray, other_ranks: np.ndarray) -> float:
    ranks = rankdata(values)
    a, b = ranks - ranks.mean(), other_ranks - other_ranks.mean()
    denominator = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator else math.nan
