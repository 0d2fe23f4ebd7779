"""The compiled CPU kernels (``csrc/sparse_linear.cpp``), built on first use.

torch's CSR kernels need the batch transposed (``(features, batch)``), a zero-filled
output and a CSR tensor per call; at small batches those copies cost more than the
products. The compiled kernels take and return activations feature-major (contiguous
``(features, batch)`` matrices, seen from Python as transposed ``(batch, features)``
tensors), so stacked layers pass them on without copies; a row-major tensor is transposed
once, in registers, where it enters or leaves.

They are built with torch's C++ extension loader (a C++ compiler and ninja, as torch's own
extensions need) the first time a layer asks for them, which takes about a minute once;
the build is cached by torch (``TORCH_EXTENSIONS_DIR``, by default under ``~/.cache``), in a
folder named by :func:`build_tag`, and every build is announced (logger ``synapses``).
A wheel built with torch importable (``pip wheel . --no-build-isolation``, see ``setup.py``)
carries them already built, as ``synapses._kernels`` with the record of the torch they were
built against (``_kernels_build.json``); they are used where torch's version and ABI,
Python, the flags and the source all match, and otherwise the build at first use takes
over, saying why. Without a compiler (and no matching built-in kernels) they are simply
unavailable: :func:`available` says so, ``compute="auto"`` and ``"measure"`` does without
them and ``compute="native"`` raises :class:`NativeKernelsUnavailable` naming the cause. CPU only, float32 and float64.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import importlib
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import torch

from .sparse_ops import CSRIndex

SOURCE = Path(__file__).parent / "csrc" / "sparse_linear.cpp"
# written by setup.py beside the kernels it compiled into a wheel (synapses._kernels)
BUILT_IN_RECORD = Path(__file__).parent / "_kernels_build.json"
# The instruction set the kernels are built for (see arch()). A build for one processor
# can crash on another (a home directory shared by a cluster's nodes), and one for another
# torch cannot be loaded, so the cached build's name carries a fingerprint of everything
# that makes a build differ (see build_tag).
ARCH_VARIABLE = "SYNAPSES_NATIVE_ARCH"
PORTABLE_ARCH = "x86-64-v3"  # AVX2 and FMA: the same vectors, so the same sums, on every such processor
log = logging.getLogger("synapses")

_lock = threading.Lock()
_module: ModuleType | None = None
_error: str | None = None


class NativeKernelsUnavailable(RuntimeError):
    """The compiled kernels could not be built or loaded here (the message says why)."""


def load() -> ModuleType:
    """The compiled kernels, built on the first call.

    Raises:
        NativeKernelsUnavailable: the build failed (no compiler, no ninja, ...) or
            ``SYNAPSES_NO_NATIVE`` is set.
    """
    global _module, _error
    if _module is not None:  # the common case, on every call: no lock
        return _module
    with _lock:
        if _module is None and _error is None:
            _module, _error = _build()
    if _module is None:
        raise NativeKernelsUnavailable(f"synapses' compiled CPU kernels are unavailable: {_error}")
    return _module


def available() -> bool:
    """Whether the compiled kernels can be used (builds them if they are not yet built)."""
    try:
        load()
    except NativeKernelsUnavailable:
        return False
    return True


def _build() -> tuple[ModuleType | None, str | None]:
    if os.environ.get("SYNAPSES_NO_NATIVE"):
        return None, "SYNAPSES_NO_NATIVE is set"
    built_in = _built_in()
    if built_in is not None:
        return built_in, None
    # torch logs a warning about CUDA when its extension module is imported on a machine
    # without CUDA; it does not concern a CPU build, so that logger is quiet meanwhile.
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension

        compiler = os.environ.get("CXX", "c++")
        if shutil.which(compiler) is None:
            return (
                None,
                f"no C++ compiler ({compiler!r} is not on PATH): install one (e.g. apt-get install g++) or use "
                "compute='sparse'",
            )
        if not cpp_extension.is_ninja_available():
            return None, "ninja is not installed (pip install ninja), or use compute='sparse'"
        name = f"synapses_sparse_linear_{build_tag()}"
        built = Path(cpp_extension._get_build_directory(name, verbose=False)) / f"{name}.so"
        before = _stamp(built)
        if before is None:
            log.warning(
                "synapses: compiling the CPU kernels for this environment, once (about a minute) into %s", built.parent
            )
        start = time.perf_counter()
        module = cpp_extension.load(
            name=name, sources=[str(SOURCE)], extra_cflags=cflags(), extra_ldflags=openmp_flags(), verbose=False
        )
        # torch's loader may also rebuild a build that exists (its sources or headers
        # changed, a half-finished build): every build is told, after the fact where it
        # could not be foreseen
        if _stamp(built) != before:
            log.warning(
                "synapses: compiled the CPU kernels in %.0f s into %s", time.perf_counter() - start, built.parent
            )
    except Exception as error:  # a missing compiler shows as OSError, RuntimeError or CalledProcessError
        if _out_of_space(error):
            where = os.environ.get("TORCH_EXTENSIONS_DIR") or "torch's extensions folder (under ~/.cache)"
            return None, (
                f"no space left on the device to build the kernels in {where}: free some, or set "
                "TORCH_EXTENSIONS_DIR to a folder on a disk with room (about 100 MB), or use compute='sparse'"
            )
        return None, f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
    finally:
        logger.setLevel(level)
    return module, None


def built_in_mismatch(record: dict) -> str | None:
    """Why the kernels a wheel was built with (their ``record``, see ``setup.py``) cannot
    be used in this environment, or ``None`` when they can."""
    here = {
        "torch": torch.__version__,
        "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
        "python": "{}.{}".format(*sys.version_info[:2]),
        # the instruction set and optimisation; whether this environment would link OpenMP
        # (its compiler) says nothing about a wheel's kernels, built and linked already
        "cflags": _without_openmp(cflags()),
        "source_sha256": hashlib.sha256(SOURCE.read_bytes()).hexdigest(),
    }
    record = record | {"cflags": _without_openmp(record.get("cflags") or [])}
    names = {"torch": "torch", "cxx11_abi": "torch's C++ ABI", "python": "Python", "cflags": "flags"}
    for key, value in here.items():
        if record.get(key) != value:
            if key == "source_sha256":
                return "their source differs from this installation's csrc/sparse_linear.cpp"
            if key == "cflags":  # the processor (no AVX2) or SYNAPSES_NATIVE_ARCH asks for another instruction set
                built, asked = " ".join(record.get(key) or []), " ".join(_without_openmp(cflags()))
                return f"they were built with {built}, this environment asks for {asked}"
            return f"they were built for {names[key]} {record.get(key)}, this is {names[key]} {value}"
    return None


def _without_openmp(flags: list[str]) -> list[str]:
    return [flag for flag in flags if flag != "-fopenmp"]


def _built_in() -> ModuleType | None:
    """The kernels compiled into this installation's wheel, where they fit this environment;
    ``None`` (the build at first use takes over, and says why where there were some)."""
    if not BUILT_IN_RECORD.exists():
        return None
    try:
        record = json.loads(BUILT_IN_RECORD.read_text())
    except (OSError, ValueError) as error:
        log.warning("synapses: unreadable %s (%s): building the CPU kernels instead", BUILT_IN_RECORD, error)
        return None
    why = built_in_mismatch(record)
    if why is None:
        try:
            module = importlib.import_module("synapses._kernels")
        except ImportError as error:
            why = f"they do not load ({error})"
        else:
            log.info("synapses: using the CPU kernels compiled into this installation (torch %s)", record["torch"])
            return module
    log.warning("synapses: not using the CPU kernels compiled into this installation: %s; building them instead", why)
    return None


def _stamp(path: Path) -> tuple[int, int] | None:
    """``path``'s modification time (ns) and size, or ``None`` where it does not exist."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


def _out_of_space(error: BaseException) -> bool:
    """Whether a failed build ran out of disk: ENOSPC from Python, or the compiler's or
    linker's "No space left on device" inside the message torch's loader raises."""
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(error) or "No space left on device" in str(getattr(error, "output", "")):
            return True
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return False


def arch() -> str:
    """The ``-march`` the kernels are built for: ``$SYNAPSES_NATIVE_ARCH`` when set (``native``
    for the widest vectors this processor has, AVX-512 where present: faster, but its sums
    round differently from an AVX2 machine's), else ``x86-64-v3`` on an x86-64 processor
    with AVX2 and FMA, so that the kernels round alike on every such processor, and
    ``native`` elsewhere."""
    chosen = os.environ.get(ARCH_VARIABLE, "").strip()
    if chosen:
        return chosen
    return PORTABLE_ARCH if platform.machine() in ("x86_64", "AMD64") and {"avx2", "fma"} <= _cpu_flags() else "native"


def cflags() -> list[str]:
    """The compiler flags of the build (the instruction set from :func:`arch`). ``-fopenmp``:
    without it ``at::parallel_for`` compiles to a plain loop, and the kernels ran on one
    thread whatever ``torch.set_num_threads`` said; with it they run in the OpenMP runtime
    torch loaded (the same ``libgomp.so.1``), so torch's thread count holds for them too."""
    return ["-O3", f"-march={arch()}", *openmp_flags()]


def openmp_flags() -> list[str]:
    """``["-fopenmp"]`` where the build can share torch's OpenMP runtime, else ``[]`` (the
    kernels then stay on one thread). Only on Linux with GCC: torch's wheels load GNU
    OpenMP (``libgomp.so.1``) there, which a GCC build links by soname; Apple's compiler
    refuses ``-fopenmp``, and clang would link LLVM's runtime as a second one that ignores
    torch's thread count. The compiler is the one torch's extension builder calls
    (``$CXX``, else ``c++``)."""
    if platform.system() != "Linux":
        return []
    return [] if "clang" in _compiler_banner(os.environ.get("CXX", "c++")) else ["-fopenmp"]


@functools.cache
def _compiler_banner(compiler: str) -> str:
    """``compiler --version``'s output (empty where it cannot run: the build then fails on
    its own and says why)."""
    try:
        return subprocess.run([*shlex.split(compiler), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, ValueError, subprocess.SubprocessError):
        return ""


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            line = next((line for line in cpuinfo if line.startswith(("flags", "Features"))), "")
    except OSError:
        return set()
    return set(line.partition(":")[2].split())


def build_tag() -> str:
    """8 hex digits naming what a build depends on: the processor's architecture and
    instruction sets, torch's version and C++ ABI, the Python version, the compiler flags
    and the kernels' source. Two environments that differ in any of them keep two builds
    side by side instead of rebuilding each other's."""
    features = platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            features += next((line for line in cpuinfo if line.startswith(("flags", "Features"))), "")
    except OSError:
        features += platform.processor()
    parts = [
        features,
        torch.__version__,
        str(Path(torch.__file__).resolve().parent),  # two environments with one torch version keep two builds
        str(torch._C._GLIBCXX_USE_CXX11_ABI),
        platform.python_version(),
        " ".join(cflags()),
        SOURCE.read_text(),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def feature_major(t: torch.Tensor) -> torch.Tensor:
    """``t`` ``(batch, features)`` as a contiguous ``(features, batch)`` matrix: a free view
    when ``t`` is already laid out that way (the output of a layer run here), else one copy."""
    t_t = t.t()
    if t_t.is_contiguous():
        return t_t
    if 0 in t.stride():  # broadcast (the gradient of a sum): a fill, not a transpose
        return t_t.contiguous()
    return load().transposed(t)


def linear_t(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, index: CSRIndex) -> torch.Tensor:
    """``W @ x.T + bias`` as a contiguous ``(rows, batch)`` matrix, through the compiled
    kernels, for ``x`` ``(batch, k)`` (read as it is where it is feature-major), ``weight``
    ``(n,)`` in weight order, ``bias`` ``(rows,)`` or ``None`` and the CSR ``index`` of ``W``
    ``(rows, k)``. (:mod:`synapses.ops` makes it the ``synapses::linear`` operator.)"""
    return load().linear(feature_major(x), weight, bias, index.crow, index.col, index.order, index.shape[1])


def linear_t_backward(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    index: CSRIndex,
    need_x: bool,
    need_w: bool,
    need_b: bool,
    x_row_major: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The gradients of :func:`linear_t` for the output gradient ``grad_y`` ``(batch, rows)``:
    ``dL/dx`` ``(batch, k)`` (row-major where ``x_row_major``, else feature-major),
    ``dL/dweight`` ``(n,)`` and ``dL/dbias`` ``(rows,)``, each ``None`` where not needed.
    The bias gradient comes with the weight gradient, from the same reads."""
    kernels = load()
    grad_y_t = feature_major(grad_y)
    grad_x = grad_w = grad_b = None
    if need_x:
        grad_x_t = kernels.linear(grad_y_t, weight, None, index.crow_t, index.col_t, index.order_t, index.shape[0])
        grad_x = kernels.transposed(grad_x_t) if x_row_major else grad_x_t.t()
    if need_w:
        grad_w, grad_b = kernels.sampled(
            grad_y_t, feature_major(x), index.crow, index.col, index.order, index.shape[1], need_b
        )
        grad_b = grad_b if need_b else None
    elif need_b:
        grad_b = grad_y_t.sum(1)
    return grad_x, grad_w, grad_b
