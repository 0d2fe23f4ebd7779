"""The network and optimizer a configuration describes, and a finished run's network back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synapses import DenseNet, EvolNet, NearParents, SparseNet, Uniform

from ..measures.topology import SIDE, pixel_counts
from ..runs.run_dir import RunDir
from ..setup.config import INPUT_SIZE, ExperimentConfig
from .decay import WeightDecayPolicy

N_CLASSES = 10
Network = SparseNet | DenseNet


def build_model(config: ExperimentConfig, generator: torch.Generator) -> Network:
    """The network of ``config``; SET randomness comes from ``generator``.

    Its SET layers choose their kernels by the fixed rule (``compute="fixed"``), not by
    measurement: the dense and sparse kernels round differently, and a run must give the
    same numbers on every machine and at every resume.
    """
    sizes = (INPUT_SIZE, *config.hidden, N_CLASSES)
    if config.model == "Dense":
        return DenseNet(sizes, dropout=config.dropout)
    # near-parents regrowth acts on the input layer: the one with a pixel geometry
    parents = config.regrowth == "near_parents"
    regrowth = NearParents(config.parent_fraction, input_grid=(SIDE, SIDE)) if parents else Uniform()
    # what both SET nets take: SET layers by the fixed rule, the rule for the input layer
    shared: dict[str, Any] = dict(generator=generator, compute="fixed", dropout=config.dropout, input_regrowth=regrowth)
    if config.model == "EvolNet":
        return EvolNet(config.evolution_proba, sizes, config.layer_epsilons(), config.zeta, per_layer=True, **shared)
    return SparseNet(sizes, config.layer_epsilons(), config.zeta, **shared)


def build_optimizer(
    config: ExperimentConfig, model: torch.nn.Module, decay: WeightDecayPolicy
) -> torch.optim.Optimizer:
    """SGD (with ``momentum``) or Adam at ``lr``; the coupled decay of epoch 1, which
    ``decay`` (the run's one :class:`~synapses_study.training.decay.WeightDecayPolicy`)
    updates each epoch. With
    ``input_lr_factor`` the first SET layer's weight is a parameter group of its own, at
    ``lr * input_lr_factor`` (without it, one group: the optimizer state of the runs made
    before the factor existed)."""
    coupled = decay.optimizer_coefficient(1)
    params: Any = list(model.parameters())
    if config.input_lr_factor != 1:
        assert isinstance(model, SparseNet)  # config validation: the factor is for SET models
        first = model.sparse_layers()[0].weight
        params = [
            {"params": [first], "lr": config.lr * config.input_lr_factor},
            {"params": [p for p in params if p is not first]},
        ]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=coupled)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=coupled)


def fix_topology(model: SparseNet, source_state: dict[str, torch.Tensor], layers: Sequence[int] | None = None) -> None:
    """Give ``model``'s SET layers (those indexed by ``layers``; ``None``: all) the
    connections of ``source_state`` (a state dict of the same architecture), keeping their
    freshly drawn weights; the other layers keep their own connections."""
    for i, layer in enumerate(model.sparse_layers()):
        if layers is not None and i not in layers:
            continue
        connections = source_state[f"set_layers.{i}.connections"]
        if connections.shape != layer.connections.shape:
            raise ValueError(
                f"topology_from: layer {i} has {len(connections)} connections there, {layer.n_params} here"
            )
        layer.connections.copy_(connections)


def first_layer_counts(model: Network) -> np.ndarray:
    """``(784,)`` connections of the first layer per input pixel (all ``out_features`` for
    a dense layer)."""
    if isinstance(model, DenseNet):
        dense = model.hidden_layers[0]
        assert isinstance(dense, torch.nn.Linear)
        return np.full(dense.in_features, dense.out_features, dtype=np.int64)
    first = model.sparse_layers()[0]
    return pixel_counts(first.connections, first.in_features)


def load_trained_model(run_dir: str | Path) -> Network:
    """The final network of a finished run (``config.json`` and ``model.pt``), in eval mode."""
    folder = RunDir(run_dir)
    config = folder.config()
    model = build_model(config, torch.Generator().manual_seed(config.seed))
    model.load_state_dict(folder.model_state())
    return model.eval()
