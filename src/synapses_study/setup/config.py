"""The configuration of one training run: a validated, JSON-serialisable dataclass.

The run's identity (:meth:`ExperimentConfig.run_id`) is derived from every field, so the
same configuration always lands in the same ``results/<run_id>/`` folder. The fields come
in sections (:class:`Section`): each declares and documents its fields, checks them and
names them in the run id, so a new field is added in one place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from synapses import erdos_renyi_n_params

INPUT_SIZE = 28 * 28  # MNIST pixels
MAX_SEED = 2**32
MNIST_TRAIN_IMAGES, MNIST_TEST_IMAGES = 60_000, 10_000
RUN_ID = re.compile(r"[A-Za-z0-9][\w.+-]*")  # a folder name in the results directory, never a path
MAX_SHIFT = 8  # pixels: a larger shift pushes most of a digit out of the 28 x 28 frame
# the largest step size float32 holds: torch refuses to convert a larger one (a traceback at
# the first step), for lr and for the first layer's lr * input_lr_factor; below it a huge
# step diverges, which the engine reports as such
MAX_LR = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max
# weights of one layer (a SET layer's connections, a dense layer's in x out): beyond 2**31
# the layer's int32 indices overflow and its tensors alone take tens of GB
MAX_LAYER_WEIGHTS = 2**31 - 1


class ConfigError(ValueError):
    """A configuration has an unknown key or a bad value."""


class Section:
    """A group of config fields that checks its own values and names itself in the run id.

    A section is a frozen dataclass of fields (each with a default, documented in the
    section's ``Attributes:``) and three static methods, each given the whole config (a
    check may read any field): :meth:`check_values` (each value alone), :meth:`check_applies`
    (settings the rest of the config would silently ignore) and :meth:`tags` (its parts of
    the run id). :class:`ExperimentConfig` is the sections together; a new field is added to
    one of them, or to a new section appended to :data:`SECTIONS`, and nowhere else.
    """

    @staticmethod
    def check_values(config: ExperimentConfig) -> None:
        """Raise :class:`ConfigError` for a value that is wrong on its own."""

    @staticmethod
    def check_applies(config: ExperimentConfig) -> None:
        """Raise :class:`ConfigError` for a setting the rest of ``config`` would ignore."""

    @staticmethod
    def tags(config: ExperimentConfig) -> list[str]:
        """This section's parts of the run id (none where its fields hold their defaults)."""
        return []


def _set_only(config: ExperimentConfig, names: tuple[str, ...]) -> None:
    """Refuse, for a dense model, a SET-layer setting that is not at its default."""
    if config.model == "Dense":
        for name in names:
            if not config._is_default(name):
                raise ConfigError(f"{name} applies to SET layers only, not to model='Dense'; remove it")


@dataclass(frozen=True)
class CoreSection(Section):
    """The fields of the study's first runs: the network, its training and evolution, the
    data, where the run starts from and where it runs.

    Attributes:
        model: ``"SparseNet"`` (784-hidden-10: SET layers and a dense readout),
            ``"EvolNet"`` (the same net, evolving during training passes) or ``"Dense"``
            (the same shape with dense ``nn.Linear`` layers: the baseline).
        hidden: widths of the hidden layers (``(512, 128)``: the original demo net).
        epochs: number of training epochs.
        seed: seeds initialisation, data order and evolution.
        batch_size: training (and evaluation) batch size.
        lr, momentum: of the optimizer.
        optimizer: ``"sgd"`` or ``"adam"`` (``momentum`` is ignored by Adam).
        weight_decay: L2 coefficient at the first epoch.
        weight_decay_end: ``None`` for a constant coefficient, else the coefficient at the
            last epoch, reached linearly (set at the start of each epoch).
        decay_mode: ``"coupled"``: the optimizer's ``weight_decay`` (adds ``wd * w`` to the
            gradient; amplified by momentum); ``"decoupled"``: every parameter is shrunk by
            ``w -= wd * w`` after each optimizer step, as the SET authors' code does.
        l1: coefficient of ``l1 * sum(|w|)`` added to the training loss (all parameters).
        epsilon: Erdős–Rényi density parameter of the SET layers, one for all or one per
            hidden layer.
        zeta: of the SET layers.
        dropout: probability of dropping each hidden unit after its ReLU in training.
        evolution: ``"epoch"`` (zero after each epoch, evolve before the next, as SparseNet),
            ``"pass"`` (each SET layer evolves with probability ``evolution_proba`` on each
            training pass, as EvolNet) or ``"off"``.
        evolution_proba: per-layer, per-pass probability for ``evolution="pass"``.
        reset_optimizer_state: reset the optimizer state of moved weights (the original
            EvolNet did not).
        regrowth: ``"uniform"`` or ``"near_parents"`` (a fraction ``parent_fraction`` of the
            new connections is placed next to the strongest surviving ones).
        parent_fraction: see ``regrowth``.
        init_from: ``run_id`` of a finished run whose final network this run starts from
            (fresh optimizer), e.g. a later phase of the EvolNet triplet.
        topology_from: ``run_id`` of a finished run of the same shape whose final
            connections (every SET layer) this run keeps fixed, with fresh weights; needs
            ``evolution="off"``.
        topology_layers: with ``topology_from``, the indices of the SET layers whose
            connections it gives (``None``: every one); the others keep the random
            connections drawn at initialisation, fixed as well.
        threads: torch intra-op threads (pinned: results depend on it bit for bit).
        train_size, test_size: use only the first so many training / test images (``None``:
            all); for quick looks and smoke runs, never for the study's numbers.
        inputs: ``"standardized"`` (mean 0.1307, std 0.3081, as the original: blank pixels are
            -0.424 and their weights get gradients), ``"unit"`` (pixels in [0, 1]: blank
            pixels are 0 and their weights get none) or ``"scaled"`` (pixels divided by
            0.3081 without centring: the standardised scale, blank pixels 0).
        record_pruning: also write ``pruning.npz``: per epoch and input pixel, the
            first-layer connections pruned and their summed ``|weight|`` before pruning
            (needs ``evolution="epoch"``).
        record_weight_mass: with ``record_pruning``, whether to keep the summed ``|weight|``
            too (float16 per epoch and pixel: about 0.9 MB committed per 1000 epochs); false
            keeps the pruned counts only.
        keep_network: whether a finished run keeps its final network (``model.pt``); false
            for runs whose weights nothing reads and would weigh on the committed results
            (a dense baseline's are 11 MB). Such a run cannot be an ``init_from`` or
            ``topology_from`` source.
        device: where the network and the data live while training: ``"cpu"``, ``"cuda"``
            or ``"cuda:N"``. A CUDA run has a run id of its own (its numbers are not the
            CPU's) and the same files; the random draws of topology, evolution and data
            order still come from CPU generators, so it starts from the CPU run's network.
    """

    model: Literal["SparseNet", "EvolNet", "Dense"] = "SparseNet"
    epochs: int = 155
    seed: int = 0
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.5
    optimizer: Literal["sgd", "adam"] = "sgd"
    weight_decay: float = 0.0
    weight_decay_end: float | None = None
    decay_mode: Literal["coupled", "decoupled"] = "coupled"
    l1: float = 0.0
    epsilon: float | tuple[float, ...] = 11.0
    zeta: float = 0.3
    evolution: Literal["epoch", "pass", "off"] = "epoch"
    evolution_proba: float = 0.0
    reset_optimizer_state: bool = True
    regrowth: Literal["uniform", "near_parents"] = "uniform"
    parent_fraction: float = 0.5
    init_from: str | None = None
    threads: int = 1
    train_size: int | None = None
    test_size: int | None = None
    record_pruning: bool = False
    record_weight_mass: bool = True
    inputs: Literal["standardized", "unit", "scaled"] = "standardized"
    hidden: tuple[int, ...] = (512, 128)
    dropout: float = 0.0
    topology_from: str | None = None
    topology_layers: tuple[int, ...] | None = None
    keep_network: bool = True
    device: str = "cpu"

    @staticmethod
    def check_values(config: ExperimentConfig) -> None:
        positive = {
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "lr": config.lr,
            "threads": config.threads,
        }
        positive.update(
            {
                f"epsilon[{i}]" if isinstance(config.epsilon, tuple) else "epsilon": e
                for i, e in enumerate(config.layer_epsilons())
            }
        )
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}")
        if not config.lr <= MAX_LR:
            raise ConfigError(f"lr must be at most {MAX_LR:.4g} (float32's largest number), got {config.lr!r}")
        # ASCII digits only: \d also matches "١" (Arabic-Indic one), which torch cannot parse
        if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", config.device):
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {config.device!r}")
        if not 0 <= config.seed < MAX_SEED:
            raise ConfigError(f"seed must be in [0, 2**32), got {config.seed!r}")
        for name, available in (("train_size", MNIST_TRAIN_IMAGES), ("test_size", MNIST_TEST_IMAGES)):
            if getattr(config, name) is not None and not 1 <= getattr(config, name) <= available:
                raise ConfigError(
                    f"{name} must be in 1..{available} (MNIST's images) or None for all, got {getattr(config, name)!r}"
                )
        for name in ("init_from", "topology_from"):
            source = getattr(config, name)
            if source is not None and not RUN_ID.fullmatch(source):
                raise ConfigError(
                    f"{name} must be a run id (a folder name in the results directory, no path), got {source!r}"
                )
        non_negative = {
            "weight_decay": config.weight_decay,
            "l1": config.l1,
            "momentum": config.momentum,
        }
        if config.weight_decay_end is not None:
            non_negative["weight_decay_end"] = config.weight_decay_end
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value!r}")
        for name in ("zeta", "evolution_proba", "parent_fraction"):
            if not 0 <= getattr(config, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(config, name)!r}")
        if not 0 <= config.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {config.dropout!r}")
        if not config.hidden or min(config.hidden) < 1:
            raise ConfigError(f"hidden must be a non-empty list of positive widths, got {list(config.hidden)!r}")
        for i, (n_in, n_out) in enumerate(config.set_layer_shapes()):
            if config.model == "Dense" and n_in * n_out > MAX_LAYER_WEIGHTS:  # sparse layers: below, by epsilon
                raise ConfigError(
                    f"hidden={list(config.hidden)}: layer {i} ({n_in} x {n_out}) is too large (at most "
                    f"{MAX_LAYER_WEIGHTS} weights a layer); choose smaller widths"
                )
        if isinstance(config.epsilon, tuple) and len(config.epsilon) != len(config.hidden):
            raise ConfigError(
                f"epsilon has {len(config.epsilon)} values for {len(config.hidden)} hidden layers; give one per hidden "
                "layer or a single number"
            )
        if config.model != "Dense":
            for i, ((n_in, n_out), eps) in enumerate(zip(config.set_layer_shapes(), config.layer_epsilons())):
                if erdos_renyi_n_params(n_in, n_out, eps, None) > n_in * n_out:
                    raise ConfigError(
                        f"epsilon={eps:g} asks for more connections than the {n_in} x {n_out} layer {i} has pairs "
                        f"(at most {n_in * n_out / (n_in + n_out):g} there)"
                    )
                if erdos_renyi_n_params(n_in, n_out, eps, None) > MAX_LAYER_WEIGHTS:
                    raise ConfigError(
                        f"hidden={list(config.hidden)}: layer {i} ({n_in} x {n_out}) would hold more than "
                        f"{MAX_LAYER_WEIGHTS} connections at epsilon={eps:g}; choose smaller widths"
                    )
        if config.decay_mode == "decoupled" and max(config.weight_decay, config.weight_decay_end or 0.0) >= 1:
            raise ConfigError(
                f"decoupled weight_decay shrinks w by wd * w per step and must be < 1, got {config.weight_decay!r}"
            )

    @staticmethod
    def check_applies(config: ExperimentConfig) -> None:
        if (config.evolution == "pass") != (config.model == "EvolNet"):
            raise ConfigError(
                f"evolution='pass' goes with model='EvolNet' and only with it (got model={config.model!r}, "
                f"evolution={config.evolution!r})"
            )
        if config.evolution == "pass" and config.evolution_proba == 0:
            raise ConfigError("evolution='pass' needs evolution_proba > 0")
        if config.evolution != "pass" and config.evolution_proba != 0:
            raise ConfigError(
                f"evolution_proba applies to model='EvolNet' only (got {config.evolution_proba!r} with "
                f"model={config.model!r}); remove it"
            )
        if config.regrowth == "uniform" and not config._is_default("parent_fraction"):
            raise ConfigError(
                f"parent_fraction applies to regrowth='near_parents' only (got {config.parent_fraction!r} with uniform "
                "regrowth); remove it"
            )
        if config.optimizer == "adam" and not config._is_default("momentum"):
            raise ConfigError(
                f"momentum applies to optimizer='sgd' only (got {config.momentum!r} with adam); remove it"
            )
        if config.model == "Dense":
            if config.evolution != "off":
                raise ConfigError("model='Dense' has nothing to evolve: set evolution='off'")
            _set_only(config, ("epsilon", "zeta", "regrowth", "topology_from", "reset_optimizer_state"))
        if config.topology_from is not None:
            if config.evolution != "off":
                raise ConfigError("topology_from keeps the connections fixed: set evolution='off'")
            if config.init_from is not None:
                raise ConfigError(
                    "init_from and topology_from exclude each other (init_from already brings the connections)"
                )
        if config.topology_layers is not None:
            if config.topology_from is None:
                raise ConfigError("topology_layers applies with topology_from only; remove it")
            layers = list(config.topology_layers)
            if not layers or layers != sorted(set(layers)) or layers[0] < 0 or layers[-1] >= len(config.hidden):
                raise ConfigError(
                    "topology_layers must list distinct SET layer indices in increasing order, each in "
                    f"0..{len(config.hidden) - 1}; got {layers!r}"
                )

    @staticmethod
    def tags(config: ExperimentConfig) -> list[str]:
        """The run id's leading parts (model and widths, epochs, decay, regrowth, inputs,
        dropout, fixed topology); :meth:`closing_tags` gives its last ones."""
        decay = f"wd{config.weight_decay:g}" + (
            f"-{config.weight_decay_end:g}" if config.weight_decay_end is not None else ""
        )
        parts = [config.model.lower()]
        if config.hidden != (512, 128):
            parts[0] += "-" + "-".join(map(str, config.hidden))
        parts += [f"e{config.epochs}", decay]
        if config.decay_mode == "decoupled":
            parts.append("dec")
        if config.l1:
            parts.append(f"l1-{config.l1:g}")
        if config.regrowth != "uniform":
            parts.append("parents")
        if config.inputs != "standardized":
            parts.append(config.inputs)
        if config.dropout:
            parts.append(f"drop{config.dropout:g}")
        if config.topology_from is not None:
            parts.append(
                "fixed" + ("" if config.topology_layers is None else "-l" + "".join(map(str, config.topology_layers)))
            )
        elif config.evolution == "off" and config.model != "Dense":
            parts.append("static")
        return parts

    @staticmethod
    def closing_tags(config: ExperimentConfig) -> list[str]:
        """The run id's last parts before the seed: a data subset, a device other than the CPU."""
        parts = []
        if config.train_size is not None or config.test_size is not None:
            parts.append("subset")
        if config.device != "cpu":
            parts.append(config.device.replace(":", ""))
        return parts


@dataclass(frozen=True)
class FirstLayerSection(Section):
    """The first SET layer's newborns and learning rate (the mechanism's experiments E1 and E3).

    Attributes:
        input_regrowth_scale: standard deviation of the first SET layer's regrown weights as a
            multiple of the He initialisation's (the initial weights keep it); the draws are
            the same, only scaled, so a run differs from its default twin from the first
            evolution on. For the mechanism's experiment E1 (near-zero newborns).
        input_lr_factor: the first SET layer's weights learn at ``lr`` times this (its bias
            and every other parameter at ``lr``); with inputs divided by 0.3081 a weight's
            step on its pre-activation grows by 1 / 0.3081**2, which this factor imitates
            without touching the inputs (experiment E3).
    """

    input_regrowth_scale: float = 1.0
    input_lr_factor: float = 1.0

    @staticmethod
    def check_values(config: ExperimentConfig) -> None:
        for name in ("input_regrowth_scale", "input_lr_factor"):
            if not getattr(config, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(config, name)!r}")
        if not config.lr * config.input_lr_factor <= MAX_LR:
            raise ConfigError(
                f"lr * input_lr_factor must be at most {MAX_LR:.4g} (float32's largest number), got "
                f"{config.lr * config.input_lr_factor!r}"
            )

    @staticmethod
    def check_applies(config: ExperimentConfig) -> None:
        if not config._is_default("input_regrowth_scale") and config.evolution != "epoch":
            raise ConfigError(
                f"input_regrowth_scale applies to evolution='epoch' only (got evolution={config.evolution!r}); "
                "remove it"
            )
        _set_only(config, ("input_regrowth_scale", "input_lr_factor"))

    @staticmethod
    def tags(config: ExperimentConfig) -> list[str]:
        parts = [f"regrow{config.input_regrowth_scale:g}"] if config.input_regrowth_scale != 1 else []
        return parts + ([f"lr1x{config.input_lr_factor:.3g}"] if config.input_lr_factor != 1 else [])


@dataclass(frozen=True)
class AugmentationSection(Section):
    """What training images are changed by, anew each epoch (experiment E5); test images never are.

    Attributes:
        blank_noise: standard deviation (in the network's input units) of zero-mean Gaussian
            noise added, in training only, to every pixel that is blank in that image, drawn
            anew each epoch, so that no pixel has a constant input (experiment E5).
        random_shift: training images are shifted by whole pixels, on each axis by an
            offset drawn uniformly from ``-random_shift .. random_shift`` anew each epoch,
            the uncovered border blank; test images stay centred (experiment E5).
    """

    blank_noise: float = 0.0
    random_shift: int = 0

    @staticmethod
    def check_values(config: ExperimentConfig) -> None:
        if config.blank_noise < 0:
            raise ConfigError(f"blank_noise must be >= 0, got {config.blank_noise!r}")
        if not 0 <= config.random_shift <= MAX_SHIFT:
            raise ConfigError(
                f"random_shift must be a whole number of pixels in 0..{MAX_SHIFT}, got {config.random_shift!r}"
            )

    @staticmethod
    def check_applies(config: ExperimentConfig) -> None:
        pass  # both act on any model

    @staticmethod
    def tags(config: ExperimentConfig) -> list[str]:
        parts = [f"noise{config.blank_noise:g}"] if config.blank_noise else []
        return parts + ([f"shift{config.random_shift}"] if config.random_shift else [])


@dataclass(frozen=True)
class RecordsSection(Section):
    """The records a run keeps of its first SET layer (each an instrument of
    :mod:`synapses_study.runs.instruments`), with the pruning record's two fields, which the
    core declares (their place among the fields predates sections), checked and tagged here.

    Attributes:
        record_lifetimes: also write ``lifetimes.npz``: every first-layer connection's
            weight before each pruning (float16), which ones each pruning removed, the
            pruning thresholds per sign, and each newborn's pair and initial weight (needs
            ``evolution="epoch"``; about 45 kB per epoch for the demo net).
        record_gradients: also write ``gradients.npz``: per epoch and input pixel, the sum
            over the epoch's batches and over the pixel's first-layer connections of each
            weight's squared gradient (float32, ``(epochs, 784)``; about 3 kB per epoch),
            the gradient exposure a forecast of the topology reads (needs a SET first layer).
    """

    record_lifetimes: bool = False
    record_gradients: bool = False

    @staticmethod
    def check_values(config: ExperimentConfig) -> None:
        pass  # booleans: their type is checked for every field

    @staticmethod
    def check_applies(config: ExperimentConfig) -> None:
        if config.record_pruning and config.evolution != "epoch":
            raise ConfigError("record_pruning needs evolution='epoch' (pruning happens between epochs)")
        if config.record_lifetimes and config.evolution != "epoch":
            raise ConfigError(
                "record_lifetimes needs evolution='epoch' (connections are born and pruned between epochs)"
            )
        if config.record_gradients and config.model == "Dense":
            raise ConfigError("record_gradients records a SET first layer's gradients; model='Dense' has none")
        if not config._is_default("record_weight_mass") and not config.record_pruning:
            raise ConfigError("record_weight_mass applies with record_pruning only; remove it")
        _set_only(config, ("record_lifetimes",))

    @staticmethod
    def tags(config: ExperimentConfig) -> list[str]:
        flags = (("rec", config.record_pruning), ("life", config.record_lifetimes), ("grad", config.record_gradients))
        return [tag for tag, on in flags if on]


# The sections after the core, in the order their fields were added (which is the order of
# the fields and of the run id's parts): a new section goes at the end.
SECTIONS: tuple[type[Section], ...] = (FirstLayerSection, AugmentationSection, RecordsSection)
ALL_SECTIONS: tuple[type[Section], ...] = (CoreSection, *SECTIONS)


@dataclass(frozen=True)
class ExperimentConfig(RecordsSection, AugmentationSection, FirstLayerSection, CoreSection):
    """One SET training run on MNIST (the original protocol by default): the fields of
    :class:`CoreSection` and of each section of :data:`SECTIONS`, in that order, each
    documented in its section.
    """

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # JSON and YAML give lists where the field holds a tuple
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            _check_type(f.name, value, hints[f.name])
            # 0 and 0.0 must give the same JSON, hence the same run_id
            if isinstance(value, tuple) and float in _element_types(hints[f.name]):
                object.__setattr__(self, f.name, tuple(float(v) for v in value))
            elif float in get_args(hints[f.name]) + (hints[f.name],) and isinstance(value, int):
                object.__setattr__(self, f.name, float(value))
        self._check_values()
        self._check_fields_apply()

    def _check_values(self) -> None:
        for name, value in self._floats().items():
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        for section in ALL_SECTIONS:
            section.check_values(self)

    def _check_fields_apply(self) -> None:
        """Refuse settings that the rest of the config would silently ignore."""
        for section in ALL_SECTIONS:
            section.check_applies(self)

    def _is_default(self, name: str) -> bool:
        """Whether field ``name`` holds its declared default (so a setting that would be
        ignored is told apart from one left alone)."""
        return getattr(self, name) == next(f.default for f in fields(self) if f.name == name)

    # ---------------------------------------------------------------- shapes
    def set_layer_shapes(self) -> list[tuple[int, int]]:
        """``(in, out)`` of each hidden layer (the SET layers of a sparse model)."""
        widths = (INPUT_SIZE, *self.hidden)
        return list(zip(widths[:-1], widths[1:]))

    def layer_epsilons(self) -> tuple[float, ...]:
        """``epsilon`` of each hidden layer."""
        return self.epsilon if isinstance(self.epsilon, tuple) else (self.epsilon,) * len(self.hidden)

    def _floats(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float):
                values[f.name] = value
            elif isinstance(value, tuple):
                values.update({f"{f.name}[{i}]": float(v) for i, v in enumerate(value)})
        return values

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> ExperimentConfig:
        """Build from a mapping; unknown keys and bad values raise :class:`ConfigError`
        whose message starts with ``where``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(sorted(known))}"
            )
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> ExperimentConfig:
        """The config of a JSON file (``config.json`` of a run folder, or ``--config``).

        Raises:
            ConfigError: naming the file when it is not readable JSON (truncated, a key given
                twice) or not a mapping of valid fields.
        """
        return cls.from_dict(read_json_object(Path(path)), where=str(path))

    def replace(self, **changes: Any) -> ExperimentConfig:
        return self.from_dict({**self.to_dict(), **changes})

    # ---------------------------------------------------------------- identity
    def run_id(self) -> str:
        """Readable, unique folder name: the main settings and a hash of the rest.

        Defaults must therefore never change: a changed default would silently give old
        results to a different configuration."""
        # Hash only the fields that differ from their defaults, so that adding a field
        # (with a default) later keeps the identity of every existing run.
        changed = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}
        digest = hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
        parts = CoreSection.tags(self)
        for section in SECTIONS:
            parts += section.tags(self)
        parts += CoreSection.closing_tags(self)
        parts += [f"s{self.seed}", digest]
        return "_".join(parts)


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict, refusing a key given twice (JSON keeps the last);
    ``json.loads(text, object_pairs_hook=unique_keys)``."""
    keys = [key for key, _ in pairs]
    if twice := sorted({key for key in keys if keys.count(key) > 1}):
        raise json.JSONDecodeError(f"key(s) {twice} appear twice in one object; keep one", "", 0)
    return dict(pairs)


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, read strictly (a key given twice is refused).

    Raises:
        ConfigError: the file is unreadable, not JSON, or not an object.
    """
    try:
        value = json.loads(path.read_text(), object_pairs_hook=unique_keys)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not a readable JSON config file ({err})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a JSON object of config fields")
    return value


def field_help() -> dict[str, str]:
    """Each field's meaning, from the ``Attributes:`` section of its section's docstring
    (one place for it; the command line's help shows it). Entries such as ``lr, momentum:``
    describe several fields at once."""
    text = "\n".join((section.__doc__ or "").split("Attributes:", 1)[1] for section in ALL_SECTIONS)
    meanings: dict[str, str] = {}
    current: list[str] = []
    for line in text.splitlines():
        entry = re.match(r"^ {8}([a-z0-9_, ]+): (.*)$", line)
        if entry:
            current = [name.strip() for name in entry.group(1).split(",")]
            for name in current:
                meanings[name] = entry.group(2).strip()
        elif line.startswith(" " * 12) and current:
            for name in current:
                meanings[name] += " " + line.strip()
    return {name: meaning.replace("``", "") for name, meaning in meanings.items()}


def _element_types(hint: Any) -> tuple[Any, ...]:
    """The element types of the ``tuple[X, ...]`` members of ``hint``."""
    members = get_args(hint) if get_args(hint) and getattr(hint, "__origin__", None) is not tuple else (hint,)
    return tuple(get_args(m)[0] for m in members if getattr(m, "__origin__", None) is tuple)


def _check_type(name: str, value: Any, hint: Any) -> None:
    options = get_args(hint)
    if getattr(hint, "__origin__", None) is Literal:
        if value not in options:
            raise ConfigError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
        return
    allowed = options if options and getattr(hint, "__origin__", None) is not tuple else (hint,)
    for kind in allowed:
        if kind is type(None) and value is None:
            return
        if getattr(kind, "__origin__", None) is tuple and isinstance(value, tuple):
            if all(_is_instance(v, get_args(kind)[0]) for v in value):
                return
            continue
        if _is_instance(value, kind):
            return
    names = [
        f"a list of {get_args(k)[0].__name__}"
        if getattr(k, "__origin__", None) is tuple
        else getattr(k, "__name__", str(k))
        for k in allowed
    ]
    raise ConfigError(f"{name} must be {' or '.join(names)}, got {value!r}")


def _is_instance(value: Any, kind: Any) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(kind, type) and isinstance(value, kind)
