"""Sparse Evolutionary Training (SET) for PyTorch with truly sparse layers."""

from .evolution import ByHand, EverySteps, Evolution, PerPass
from .layer import SETLayer, connections_dtype, erdos_renyi_n_params
from .models import DenseNet, EvolNet, SparseNet
from .native import arch as native_arch
from .optim_state import UnknownOptimizerStateError, register_reset_rule, reset_state
from .reference import MaskedLinear
from .regrowth import Gradient, NearParents, RegrowthRule, Uniform
from .sparsify import Replacement, densify, sparsify

__version__ = "0.1.0"
__all__ = [
    "SETLayer",
    "SparseNet",
    "EvolNet",
    "DenseNet",
    "MaskedLinear",
    "sparsify",
    "densify",
    "Replacement",
    "Evolution",
    "EverySteps",
    "PerPass",
    "ByHand",
    "RegrowthRule",
    "Uniform",
    "NearParents",
    "Gradient",
    "erdos_renyi_n_params",
    "connections_dtype",
    "reset_state",
    "register_reset_rule",
    "UnknownOptimizerStateError",
    "native_arch",
]
