"""Sparse Evolutionary Training (SET) for PyTorch with truly sparse layers."""
import warnings

# torch warns once that sparse CSR support is "beta"; the kernels used here are checked
# against dense references by the test suite.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
# older torch (2.11) adds this one: check_invariants=False is deliberate (indices built here)
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled", category=UserWarning)

from .layer import SETLayer, erdos_renyi_n_params  # noqa: E402
from .models import EvolNet, SparseNet  # noqa: E402
from .optim_state import UnknownOptimizerStateError, register_reset_rule, reset_state  # noqa: E402
from .reference import MaskedLinear  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "SETLayer",
    "SparseNet",
    "EvolNet",
    "MaskedLinear",
    "erdos_renyi_n_params",
    "reset_state",
    "register_reset_rule",
    "UnknownOptimizerStateError",
]
