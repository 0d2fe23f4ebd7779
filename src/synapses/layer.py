"""SETLayer: a truly sparse linear layer whose connections evolve (Mocanu et al., 2018)."""

from __future__ import annotations

import math
import operator
from typing import Any, Literal

import torch
from torch import nn

from . import native, ops
from .deprecation import warn_once
from .dispatch import KERNELS, auto_kernel, fixed_rule_is_dense, measured_kernel
from .optim_state import apply_reset, plan_reset
from .pairs import prune_closest_to_zero, sample_free_pairs
from .regrowth import NearParents, RegrowthRule, Uniform, as_rule
from .sparse_ops import CSRIndex, flat_keys

CONTENT_CHECK_MAX = ops.CONTENT_CHECK_MAX  # connections whose content is compared on every CPU forward call
COMPUTE_MODES = ("auto", "measure", "fixed", "sparse", "native", "dense")
SUPPORTED_DTYPES = (torch.float32, torch.float64)
# compute="dense" scatters the weights into an (out, in) matrix on every call: refused
# beyond this many elements (256 MiB in float32), where it would dwarf the sparse storage.
DENSE_COMPUTE_MAX_ELEMENTS = 1 << 26
Compute = Literal["auto", "measure", "fixed", "sparse", "native", "dense"]
Regrowth = Literal["uniform", "near_parents", "gradient"] | RegrowthRule
# The defaults of SET (Mocanu et al. 2018), stated here for every constructor that takes them.
DEFAULT_EPSILON: float = 11
DEFAULT_ZETA: float = 0.3
# Connections are addressed by the flat key out * in_features + in, an int64.
MAX_PAIRS = 2**62
INT32_MAX = 2**31 - 1


def connections_dtype(in_features: int, out_features: int) -> torch.dtype:
    """The dtype of a layer's ``connections`` buffer: int32 (8 bytes a connection, half of
    int64's) where every flat key ``out * in_features + in`` fits int32, int64 beyond.

    Keyed on the pairs, not on each side: a key computed in the buffer's own dtype (as user
    code may) is then exact for every layer; the layer computes its keys in int64 anyway.
    """
    return torch.int32 if in_features * out_features - 1 <= INT32_MAX else torch.int64


def erdos_renyi_n_params(in_features: int, out_features: int, epsilon: float, sparsity: float | None) -> int:
    """Number of connections of a SET layer: ``int(in * out * density)``.

    The density is ``epsilon * (in + out) / (in * out)`` (Erdős–Rényi), or ``1 - sparsity``
    when ``sparsity`` is given. Computed exactly as synapses 0.0.13 did, float rounding
    included, so the parameter counts match the original.
    """
    density = (
        1 - sparsity if sparsity is not None else epsilon * (in_features + out_features) / (in_features * out_features)
    )
    return int(in_features * out_features * density)


class SETLayer(nn.Module):
    r"""Sparse linear layer ``y = x W^T + b`` with SET pruning and regrowth.

    ``W`` (``out_features x in_features``) is never stored: the layer keeps ``n_params``
    values and, for each, its (input, output) pair. Memory, construction and evolution are
    O(n_params + in_features + out_features).

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        epsilon: Erdős–Rényi density parameter: ``density = epsilon (in + out) / (in out)``.
        sparsity: fraction of absent connections; overrides ``epsilon`` when given.
        zeta: fraction of each sign's weights replaced by an evolution step.
        bias: whether to learn an additive bias.
        device, dtype: of the parameters and buffers.
        generator: random source of initialisation and evolution (its device is where the
            drawing happens); ``None`` uses torch's default generator, so
            ``torch.manual_seed`` makes runs repeat.
        compute: ``"auto"``: by a rule, at no cost: on the CPU the compiled kernels (built
            on first use: announced, about a minute, once per environment) unless the layer
            is small and dense enough for dense to win (by thread count, 50% at one thread:
            :data:`synapses.dispatch.AUTO_DENSE_MIN_DENSITY`), then dense; where the compiled
            kernels cannot be built, and on a GPU, the ``"fixed"`` rule; ``"measure"``: whichever of the dense, the CSR
            and (on the CPU) the compiled kernels runs a training step fastest for this
            layer, batch size, dtype and thread count, timed on first use (seconds;
            :mod:`synapses.dispatch`; large layers never timed); ``"fixed"``: dense for small
            layers of density >= 6%, CSR otherwise, a rule that is the same on every machine (for bit-identical reruns);
            ``"sparse"`` (torch's CSR kernels), ``"native"`` (the compiled CPU kernels of
            :mod:`synapses.native`, built on first use; refused where they cannot be built
            or off the CPU) or ``"dense"``. Only the compute path changes; storage is sparse
            in every mode. ``"dense"`` is refused for large layers.
        regrowth: where moved weights go, a :class:`~synapses.regrowth.RegrowthRule`:
            :class:`~synapses.regrowth.Uniform` (SET; the default, ``None``),
            :class:`~synapses.regrowth.NearParents` (a fraction next to strong surviving
            connections, on the rule's ``input_grid`` when the inputs are an image, the rest
            uniformly) or :class:`~synapses.regrowth.Gradient` (RigL: the free pairs with
            the largest weight gradient on the last training batch; the rule, not the layer,
            keeps that batch's input and output gradient, ``batch x (in + out)`` values).
            A rule's name (``"uniform"``, ``"near_parents"``, ``"gradient"``) still works
            and warns once: deprecated.
        parent_fraction, input_grid: deprecated spellings of ``NearParents(fraction,
            input_grid=...)``'s settings; they still work and warn once.

    Shape:
        - Input: :math:`(*, H_{in})`, :math:`H_{in} = \text{in\_features}`.
        - Output: :math:`(*, H_{out})`, :math:`H_{out} = \text{out\_features}`.

    Attributes:
        weight: ``(n_params,)`` the connection values, initialised from N(0, 2 / in_features).
        bias: ``(out_features,)`` initialised from N(0, 2 / in_features), or ``None``.
        connections: ``(n_params, 2)`` int32 buffer (int64 where ``in_features *
            out_features`` exceeds 2**31: :func:`connections_dtype`); column 0 the input
            index, column 1 the output index of each value. No pair appears twice.
        pruned: ``(n_params,)`` bool buffer; the connections ``zero_connections`` marked
            and the next ``evolve_connections`` moves.
        optimizer: ``None``, or an optimizer assigned as in synapses 0.0.13 (deprecated:
            warns once) whose state of moved weights is reset.

    Example::

        >>> layer = SETLayer(784, 512)
        >>> layer(torch.randn(128, 784)).shape
        torch.Size([128, 512])
        >>> layer.n_params
        14256
    """

    connections: torch.Tensor
    pruned: torch.Tensor
    bias: nn.Parameter | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        epsilon: float = DEFAULT_EPSILON,
        sparsity: float | None = None,
        zeta: float = DEFAULT_ZETA,
        bias: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
        compute: Compute = "auto",
        regrowth: Regrowth | None = None,
        parent_fraction: float | None = None,
        input_grid: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        in_features, out_features = (
            _positive_int("in_features", in_features),
            _positive_int("out_features", out_features),
        )
        if in_features * out_features > MAX_PAIRS:
            raise ValueError(
                f"a {in_features} x {out_features} layer has more than 2**62 pairs; connections are addressed by "
                "int64 keys"
            )
        if not 0 <= zeta <= 1:
            raise ValueError(f"zeta must be in [0, 1], got {zeta!r}")
        if sparsity is None and not (epsilon > 0 and math.isfinite(epsilon)):
            raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
        _check_dtype(dtype if dtype is not None else torch.get_default_dtype())
        if torch.empty(0, device=device).device.type == "meta":
            raise ValueError(
                "SETLayer cannot live on the meta device: its connections are drawn (data-dependent) at construction"
            )
        if sparsity is not None and not 0 <= sparsity < 1:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
        if compute not in COMPUTE_MODES:
            raise ValueError(f"compute must be one of {COMPUTE_MODES}, got {compute!r}")
        if parent_fraction is not None:
            warn_once("SETLayer(parent_fraction=...)", "regrowth=synapses.NearParents(fraction)")
            if not 0 <= parent_fraction <= 1:
                raise ValueError(f"parent_fraction must be in [0, 1], got {parent_fraction!r}")
        rule = as_rule(regrowth, parent_fraction)
        if input_grid is not None:
            warn_once("SETLayer(input_grid=...)", "regrowth=synapses.NearParents(fraction, input_grid=(height, width))")
            if len(input_grid) != 2 or any(
                isinstance(side, bool) or not isinstance(side, int) or side < 1 for side in input_grid
            ):
                raise ValueError(f"input_grid must be (height, width), two positive integers, got {input_grid!r}")
            if input_grid[0] * input_grid[1] != in_features:
                raise ValueError(f"input_grid {input_grid!r} does not have in_features={in_features} pixels")
        n_params = erdos_renyi_n_params(in_features, out_features, epsilon, sparsity)
        source = f"sparsity={sparsity!r}" if sparsity is not None else f"epsilon={epsilon!r}"
        if n_params > in_features * out_features:
            raise ValueError(
                f"{source} asks for {n_params} connections but a {in_features} x {out_features} "
                f"layer has only {in_features * out_features} pairs"
            )
        if n_params < 1:
            raise ValueError(f"{source} gives no connection for a {in_features} x {out_features} layer")
        if compute == "dense" and in_features * out_features > DENSE_COMPUTE_MAX_ELEMENTS:
            raise ValueError(f"compute='dense' would allocate {in_features} x {out_features} weights per call")
        if compute == "native":
            if torch.empty(0, device=device).device.type != "cpu":
                raise ValueError(
                    "compute='native' runs on the CPU only, not on "
                    f"{torch.device(device) if device is not None else 'this device'}"
                )
            native.load()  # NativeKernelsUnavailable (with the cause) here, not at the first call

        self.in_features = in_features
        self.out_features = out_features
        self.epsilon = epsilon
        self.sparsity = 1 - n_params / (in_features * out_features) if sparsity is None else sparsity
        self.zeta = zeta
        self.n_params = n_params
        self.compute = compute
        self.generator = generator
        self.regrowth_rule = rule
        # kept for the deprecated spellings: a rule named later (evolve_connections) takes
        # the fraction given here, and NearParents without a grid reads the layer's
        self.parent_fraction = rule.fraction if isinstance(rule, NearParents) else parent_fraction
        self.input_grid = input_grid
        self._optimizer: torch.optim.Optimizer | None = None

        self.weight = nn.Parameter(torch.empty(n_params, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self.register_buffer(
            "connections",
            torch.empty(n_params, 2, dtype=connections_dtype(in_features, out_features), device=device),
        )
        self.register_buffer("pruned", torch.zeros(n_params, dtype=torch.bool, device=device))
        self.reset_parameters()
        rule.attach(self)
        # torch's fused inference paths (TransformerEncoderLayer's under eval() and no_grad)
        # read linear1.weight as an (out, in) matrix; they skip a module that holds a module
        # with hooks, so this no-op hook sends a block holding a SETLayer down its plain path.
        self.register_forward_pre_hook(_keep_off_fused_paths)

    # ------------------------------------------------------------------ construction
    @property
    def density(self) -> float:
        return self.n_params / (self.in_features * self.out_features)

    @property
    def init_std(self) -> float:
        """Standard deviation of initial and regrown weights (He: sqrt(2 / in_features))."""
        return math.sqrt(2.0 / self.in_features)

    def reset_parameters(self) -> None:
        """Draw new random connections, weights and bias (He initialisation)."""
        with torch.no_grad():
            keys = sample_free_pairs(
                torch.empty(0, dtype=torch.int64, device=self.connections.device),
                self.n_params,
                self.in_features * self.out_features,
                generator=self.generator,
            )
            self.connections.copy_(self._pairs_from_keys(keys))
            self.weight.copy_(self._draw_normal(self.n_params))
            if self.bias is not None:
                self.bias.copy_(self._draw_normal(self.out_features))
            self.pruned.zero_()

    def _draw_normal(self, n: int) -> torch.Tensor:
        device = self.generator.device if self.generator is not None else self.weight.device
        values = torch.randn(n, generator=self.generator, device=device, dtype=self.weight.dtype)
        return (values * self.init_std).to(self.weight.device)

    def _pairs_from_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """``(k,)`` int64 flat keys ``out * in_features + in`` to ``(k, 2)`` (input, output)
        pairs in the connections' dtype."""
        return torch.stack([keys % self.in_features, keys // self.in_features], dim=1).to(self.connections.dtype)

    def connection_keys(self) -> torch.Tensor:
        """``(n_params,)`` int64 flat keys ``out * in_features + in`` of the connections, in
        slot order: one integer per connection, exact whatever the ``connections`` dtype (a
        key computed in int32 would overflow past 2**31 pairs)."""
        return flat_keys(self.connections, self.in_features)

    # ------------------------------------------------------------------ computation
    def _csr_index(self) -> CSRIndex:
        """The CSR index of the current connections (built once per topology, see
        :func:`synapses.ops.index_for`: rebuilt when the connections change in place, which
        bumps their version counter, or are replaced; on the CPU up to CONTENT_CHECK_MAX
        connections, also when they were written through ``.data``; above that, and on a GPU,
        change connections in place, never through ``.data``)."""
        return ops.index_for(self.connections, self.in_features, self.out_features)

    def kernel_for(self, batch: int = 1) -> str:
        """The path :meth:`forward` takes for a ``batch`` of inputs: ``"dense"``, ``"sparse"``
        or ``"native"`` (see ``compute``)."""
        if self.compute in ("sparse", "native", "dense"):
            return self.compute
        if self.compute == "fixed":
            return (
                "dense"
                if fixed_rule_is_dense(self.in_features, self.out_features, self.n_params, self.weight.device)
                else "sparse"
            )
        if self.compute == "auto":
            return auto_kernel(self.in_features, self.out_features, self.n_params, self.weight.device)
        return measured_kernel(
            self.in_features, self.out_features, self.n_params, batch, self.weight.device, self.weight.dtype
        )

    def uses_dense_kernels(self, batch: int = 1) -> bool:
        """Whether :meth:`forward` runs the dense path for a ``batch`` of inputs (see ``compute``)."""
        return self.kernel_for(batch) == "dense"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(*, in_features)`` -> ``(*, out_features)``."""
        if x.is_nested:
            raise ValueError(
                "SETLayer got a nested tensor (from nn.TransformerEncoder's fast path?); set the encoder's "
                "use_nested_tensor = False, as synapses.sparsify does"
            )
        if (torch.compiler.is_exporting() or torch.jit.is_tracing()) and torch.onnx.is_in_onnx_export():
            raise RuntimeError(ops.ONNX_REFUSAL)
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"expected input of shape (*, {self.in_features}), got {tuple(x.shape)}")
        if self.weight.device.type == "meta":
            raise RuntimeError(
                "this SETLayer is on the meta device and holds no connections to compute with; build it on a real "
                "device"
            )
        if torch.is_autocast_enabled(x.device.type):
            # the sparse kernels have no reduced-precision path: compute in the layer's dtype,
            # also for an input already in it (autocast would lower the dense path's F.linear
            # and the CSR products, which refuse bfloat16, inside)
            with torch.autocast(x.device.type, enabled=False):
                return self.forward(x.to(self.weight.dtype))
        if x.dtype != self.weight.dtype:
            raise TypeError(
                f"input is {x.dtype} but the layer's weight is {self.weight.dtype}; convert one of them "
                f"(x.to({self.weight.dtype}) or layer.to({x.dtype}))"
            )
        batch_shape = x.shape[:-1]
        # a (batch, in) input goes in as it is: a reshape would add a node to the graph
        x2d = x if x.dim() == 2 else x.reshape(-1, self.in_features)
        if self.weight.dtype not in SUPPORTED_DTYPES:  # converted after construction (.half())
            _check_dtype(self.weight.dtype)
        # The kernels take the connections themselves and find their index inside a custom
        # operator (synapses.ops): nothing here reads a data pointer or version, so
        # torch.compile keeps one graph through evolutions and torch.export can trace it.
        y = KERNELS[self.kernel_for(len(x2d))](x2d, self.weight, self.bias, self.connections, self.out_features)
        return y if x.dim() == 2 else y.reshape(*batch_shape, self.out_features)

    def __prepare_scriptable__(self) -> SETLayer:
        raise TypeError(
            "SETLayer cannot be compiled by torch.jit.script (its kernels are Python autograd functions); use it "
            "eagerly or with torch.compile"
        )

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # .to(dtype), .half(), .bfloat16(), ... all come here: an unsupported dtype is refused
        # before anything converts (fn is tried on an empty tensor like the weight), instead
        # of at the next forward call.
        probe = fn(torch.empty(0, dtype=self.weight.dtype, device=self.weight.device))
        if isinstance(probe, torch.Tensor) and probe.is_floating_point() and probe.dtype not in SUPPORTED_DTYPES:
            raise ValueError(
                f"a SETLayer cannot be converted to {probe.dtype}: it supports dtype float32 and float64 (half "
                "precision has no sparse kernels); keep it float32 (under torch.autocast it computes in float32). "
                "Modules converted before this layer stay converted: convert the model back with .float()"
            )
        return super()._apply(fn, recurse)

    @classmethod
    def from_dense(
        cls,
        linear: nn.Linear,
        epsilon: float = DEFAULT_EPSILON,
        sparsity: float | None = None,
        *,
        connections: Literal["random", "largest"] = "random",
        keep_weights: bool = True,
        **kwargs: Any,
    ) -> SETLayer:
        """A SETLayer of ``linear``'s shape, device, dtype and bias, with ``linear``'s weights
        at its connections.

        Args:
            linear: the dense layer (``weight`` ``(out, in)``); it is not changed.
            epsilon, sparsity: how many connections (see :class:`SETLayer`).
            connections: ``"random"``: drawn as SETLayer draws them (SET's start);
                ``"largest"``: the pairs of largest ``|weight|`` (magnitude pruning of a
                trained layer; ties broken by position).
            keep_weights: copy ``linear``'s weight at each connection and its bias; otherwise
                keep SETLayer's He initialisation.
            kwargs: the other arguments of :class:`SETLayer` (``zeta``, ``generator``, ``compute``, ...).
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"SETLayer.from_dense takes an nn.Linear, got {type(linear).__name__}")
        if connections not in ("random", "largest"):
            raise ValueError(f"connections must be 'random' or 'largest', got {connections!r}")
        layer = cls(
            linear.in_features,
            linear.out_features,
            epsilon,
            sparsity,
            bias=linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
            **kwargs,
        )
        with torch.no_grad():
            if connections == "largest":
                # a stable sort: equal magnitudes go to the lower flat key (out * in_features + in)
                order = torch.sort(linear.weight.abs().flatten(), descending=True, stable=True).indices
                layer.connections.copy_(layer._pairs_from_keys(order[: layer.n_params]))
            if keep_weights:
                layer.weight.copy_(linear.weight[layer.connections[:, 1], layer.connections[:, 0]])
                if linear.bias is not None and layer.bias is not None:
                    layer.bias.copy_(linear.bias)
        return layer

    def to_linear(self) -> nn.Linear:
        """An ``nn.Linear`` with this layer's weights, exactly (zeros at the absent pairs), on
        its device and in its dtype; the random state is not touched. For deployment
        (ONNX export, quantisation); :func:`synapses.densify` converts a whole model."""
        # built on the meta device, then given storage: nn.Linear's own initialisation would
        # draw from the global random generator for weights about to be overwritten
        linear = nn.Linear(
            self.in_features, self.out_features, bias=self.bias is not None, device="meta", dtype=self.weight.dtype
        ).to_empty(device=self.weight.device)
        with torch.no_grad():
            linear.weight.copy_(self.to_dense())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def to_dense(self) -> torch.Tensor:
        """The weight as a dense ``(out_features, in_features)`` tensor (differentiable)."""
        dense = self.weight.new_zeros(self.out_features, self.in_features)
        return dense.index_put((self.connections[:, 1], self.connections[:, 0]), self.weight)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # whole-model pickles made before ``optimizer`` and ``regrowth`` became properties
        # hold them as plain attributes, which would now shadow nothing and break evolution
        if "optimizer" in state:
            state["_optimizer"] = state.pop("optimizer")
        state.pop("regrowth", None)
        super().__setstate__(state)

    @property
    def regrowth(self) -> str:
        """The regrowth rule's name (a deprecated spelling: read ``regrowth_rule``)."""
        warn_once("layer.regrowth (the rule's name)", "layer.regrowth_rule (the rule itself)")
        return self.regrowth_rule.name

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer assigned as in synapses 0.0.13 (``layer.optimizer = opt``, a
        deprecated spelling): its state of moved weights is reset too. ``None`` by default;
        pass ``optimizer=`` to :meth:`evolve_connections` or use :class:`~synapses.Evolution`."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer: torch.optim.Optimizer | None) -> None:
        # four frames up: warn_once, this setter, nn.Module.__setattr__, the assignment
        warn_once(
            "layer.optimizer = ...",
            "synapses.Evolution(model, optimizer) or evolve_connections(optimizer=...)",
            stacklevel=4,
        )
        self._optimizer = optimizer

    def memory_bytes(self) -> dict[str, int]:
        """Bytes this layer holds now, by part: ``weight`` and ``bias`` (values),
        ``gradients`` (their ``.grad`` where set), ``connections``, ``pruned`` and ``index``
        (what :func:`synapses.ops.cached_index_bytes` says of the connections: the CSR index
        the sparse and compiled kernels last read, 0 before the first such call). An
        optimizer's state (momentum) is not the layer's and is not counted."""

        def nbytes(t: torch.Tensor | None) -> int:
            return 0 if t is None else t.numel() * t.element_size()

        return {
            "weight": nbytes(self.weight),
            "bias": nbytes(self.bias),
            "gradients": nbytes(self.weight.grad) + (0 if self.bias is None else nbytes(self.bias.grad)),
            "connections": nbytes(self.connections),
            "pruned": nbytes(self.pruned),
            "index": ops.cached_index_bytes(self.connections),
        }

    # ------------------------------------------------------------------ evolution
    @torch.no_grad()
    def zero_connections(self, zeta: float | None = None) -> torch.Tensor:
        """Mark and zero, per sign, the fraction ``zeta`` (default: the layer's) of weights
        closest to zero.

        Returns the ``(k,)`` indices of the marked weights; :meth:`evolve_connections`
        moves them.
        """
        zeta = self.zeta if zeta is None else zeta
        if not 0 <= zeta <= 1:
            raise ValueError(f"zeta must be in [0, 1], got {zeta!r}")
        self.pruned.copy_(prune_closest_to_zero(self.weight, zeta))
        indices = self.pruned.nonzero().squeeze(1)
        self.weight[indices] = 0
        return indices

    @torch.no_grad()
    def evolve_connections(
        self, init: bool = True, optimizer: torch.optim.Optimizer | None = None, *, regrowth: Regrowth | None = None
    ) -> torch.Tensor:
        """Move the marked weights (marking them first if none are) to new connections.

        The new (input, output) pairs are chosen by the regrowth rule among the pairs not
        connected after pruning; no pair is ever duplicated and ``n_params`` does not change.

        Args:
            init: draw the moved weights from N(0, 2 / in_features); otherwise set them to 0.
            optimizer: its state of the moved weights is reset to a fresh parameter's, and
                so is ``self.optimizer``'s when that is another one. Each must hold the
                layer's weight.
            regrowth: this step's rule, a name or a :class:`~synapses.regrowth.RegrowthRule`
                (default: the layer's).

        Returns:
            ``(k,)`` indices (into ``weight`` and ``connections``) of the moved weights.
        """
        rule = self.regrowth_rule if regrowth is None else as_rule(regrowth, self.parent_fraction)
        optimizers = [o for o in (optimizer, self.optimizer) if o is not None]
        optimizers = [o for i, o in enumerate(optimizers) if all(o is not other for other in optimizers[:i])]
        # Checked before anything moves: unknown optimizer state leaves the layer untouched.
        for candidate in optimizers:
            if not any(p is self.weight for group in candidate.param_groups for p in group["params"]):
                raise ValueError(
                    f"the {type(candidate).__name__} given to evolve_connections does not hold this layer's weight: "
                    "nothing of it could be reset"
                )
        reset_plan = [entry for candidate in optimizers for entry in plan_reset(candidate, self.weight)]
        if not bool(self.pruned.any()):
            self.zero_connections()
        moved = self.pruned.nonzero().squeeze(1)
        kept = ~self.pruned
        kept_keys = self.connection_keys()[kept]
        new_keys = rule.grow(self, kept_keys, self.weight[kept], moved.numel())
        self.connections[moved] = self._pairs_from_keys(new_keys)
        self.weight[moved] = self._draw_normal(moved.numel()) if init else 0
        self.pruned.zero_()
        apply_reset(reset_plan, moved)
        if self.weight.grad is not None:  # a moved weight's gradient belongs to its old connection
            self.weight.grad[moved] = 0
        return moved

    # ------------------------------------------------------------------ plumbing
    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # A connection out of range would make the CSR kernels (built without invariant
        # checks, for speed) read out of bounds; a duplicate pair would count twice.
        connections = state_dict.get(prefix + "connections")
        if connections is not None:
            problem = self._connections_problem(connections)
            if problem:
                error_msgs.append(f"{prefix}connections: {problem}")
                return
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _connections_problem(self, connections: torch.Tensor) -> str | None:
        """Why ``connections`` cannot be this layer's, or ``None``."""
        if tuple(connections.shape) != (self.n_params, 2):
            return f"expected shape ({self.n_params}, 2), got {tuple(connections.shape)}"
        if connections.dtype not in (torch.int64, torch.int32, torch.int16):
            return f"expected an integer dtype, got {connections.dtype}"
        inputs, outputs = connections[:, 0].long(), connections[:, 1].long()
        for name, index, size in (("input", inputs, self.in_features), ("output", outputs, self.out_features)):
            bad = (index < 0) | (index >= size)
            if bool(bad.any()):
                row = int(bad.nonzero()[0])
                return f"connection {row} {tuple(connections[row].tolist())} has an {name} index outside [0, {size})"
        keys = outputs * self.in_features + inputs
        if torch.unique(keys).numel() != keys.numel():
            return "some (input, output) pair appears twice"
        return None

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"n_params={self.n_params}, density={self.density:.4f}, epsilon={self.epsilon}, "
            f"zeta={self.zeta}, bias={self.bias is not None}"
            + (f", regrowth={self.regrowth_rule!r}" if not isinstance(self.regrowth_rule, Uniform) else "")
        )


def _positive_int(name: str, value: object) -> int:
    """``value`` as an int, accepting what ``operator.index`` accepts (numpy integers), not bools."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        size = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if size < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return size


def _keep_off_fused_paths(module: nn.Module, args: tuple[Any, ...]) -> None:
    """A no-op forward pre-hook (see ``SETLayer.__init__``); module-level, so that a pickled
    layer carries it."""


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(
            f"SETLayer supports dtype float32 and float64, got {dtype} (half precision has no sparse CPU kernels)"
        )
