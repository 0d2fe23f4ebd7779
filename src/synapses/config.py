"""The configuration of one training run: a validated, JSON-serialisable dataclass.

The run's identity (:meth:`ExperimentConfig.run_id`) is derived from every field, so the
same configuration always lands in the same ``results/<run_id>/`` folder.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints


class ConfigError(ValueError):
    """A configuration has an unknown key or a bad value."""


@dataclass(frozen=True)
class ExperimentConfig:
    """One SET training run on MNIST (the original protocol by default).

    Attributes:
        model: ``"SparseNet"`` (784-512-128-10) or ``"EvolNet"`` (same net, evolving during
            training passes).
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
        epsilon, zeta: of the SET layers.
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
        threads: torch intra-op threads (pinned: results depend on it bit for bit).
        train_size, test_size: use only the first so many training / test images (``None``:
            all); for quick looks and smoke runs, never for the study's numbers.
        inputs: ``"standardized"`` (mean 0.1307, std 0.3081, as the original: blank pixels are
            -0.424 and their weights get gradients) or ``"unit"`` (pixels in [0, 1]: blank
            pixels are 0 and their weights get none).
        record_pruning: also write ``pruning.npz``: per epoch and input pixel, the
            first-layer connections pruned and their summed ``|weight|`` before pruning
            (needs ``evolution="epoch"``).
    """

    model: Literal["SparseNet", "EvolNet"] = "SparseNet"
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
    epsilon: float = 11.0
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
    inputs: Literal["standardized", "unit"] = "standardized"

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            _check_type(f.name, value, hints[f.name])
            if float in get_args(hints[f.name]) + (hints[f.name],) and isinstance(value, int):
                # 0 and 0.0 must give the same JSON, hence the same run_id
                object.__setattr__(self, f.name, float(value))
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "threads": self.threads, "epsilon": self.epsilon}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}")
        non_negative = {"weight_decay": self.weight_decay, "l1": self.l1, "momentum": self.momentum, "seed": self.seed}
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 or None, got {getattr(self, name)!r}")
        if self.weight_decay_end is not None:
            non_negative["weight_decay_end"] = self.weight_decay_end
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value!r}")
        for name in ("zeta", "evolution_proba", "parent_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if (self.evolution == "pass") != (self.model == "EvolNet"):
            raise ConfigError(f"evolution='pass' goes with model='EvolNet' and only with it (got model={self.model!r}, evolution={self.evolution!r})")
        if self.record_pruning and self.evolution != "epoch":
            raise ConfigError("record_pruning needs evolution='epoch' (pruning happens between epochs)")
        if self.evolution == "pass" and self.evolution_proba == 0:
            raise ConfigError("evolution='pass' needs evolution_proba > 0")
        if self.decay_mode == "decoupled" and self.weight_decay >= 1:
            raise ConfigError(f"decoupled weight_decay shrinks w by wd * w per step and must be < 1, got {self.weight_decay!r}")

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> "ExperimentConfig":
        """Build from a mapping; unknown keys and bad values raise :class:`ConfigError`
        whose message starts with ``where``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "ExperimentConfig":
        return cls.from_dict(json.loads(Path(path).read_text()), where=str(path))

    def replace(self, **changes: Any) -> "ExperimentConfig":
        return self.from_dict({**self.to_dict(), **changes})

    # ---------------------------------------------------------------- identity
    def weight_decay_at(self, epoch: int) -> float:
        """Coefficient used during ``epoch`` (1-based)."""
        if self.weight_decay_end is None or self.epochs == 1:
            return self.weight_decay
        progress = (epoch - 1) / (self.epochs - 1)
        return self.weight_decay + (self.weight_decay_end - self.weight_decay) * progress

    def run_id(self) -> str:
        """Readable, unique folder name: the main settings and a hash of the rest.

        Defaults must therefore never change: a changed default would silently give old
        results to a different configuration."""
        # Hash only the fields that differ from their defaults, so that adding a field
        # (with a default) later keeps the identity of every existing run.
        changed = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}
        digest = hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
        decay = f"wd{self.weight_decay:g}" + (f"-{self.weight_decay_end:g}" if self.weight_decay_end is not None else "")
        parts = [self.model.lower(), f"e{self.epochs}", decay]
        if self.decay_mode == "decoupled":
            parts.append("dec")
        if self.l1:
            parts.append(f"l1-{self.l1:g}")
        if self.regrowth != "uniform":
            parts.append("parents")
        if self.inputs != "standardized":
            parts.append(self.inputs)
        if self.record_pruning:
            parts.append("rec")
        if self.train_size is not None or self.test_size is not None:
            parts.append("subset")
        parts += [f"s{self.seed}", digest]
        return "_".join(parts)


def _check_type(name: str, value: Any, hint: Any) -> None:
    options = get_args(hint)
    if getattr(hint, "__origin__", None) is Literal:
        if value not in options:
            raise ConfigError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
        return
    allowed = options if options else (hint,)
    for kind in allowed:
        if kind is type(None) and value is None:
            return
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind in (str, bool) and isinstance(value, kind):
            return
    raise ConfigError(f"{name} must be {' or '.join(getattr(k, '__name__', str(k)) for k in allowed)}, got {value!r}")
