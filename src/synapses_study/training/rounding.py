"""What decides a run's rounding, pinned so that a seed names one trajectory on any x86-64
processor with AVX2 (the design; checked so far on one kind of processor, an AVX-512 AMD
EPYC, by forcing other settings there), and recorded in each run's ``environment.json``.

Three libraries pick their code path by the processor they find, and each path sums in its
own order: torch's vectorised kernels (``torch.backends.cpu.get_cpu_capability()``: AVX512 on
one machine, AVX2 on another), MKL's BLAS behind the dense readout, and this package's
compiled kernels (built for the processor unless told otherwise). Two runs of one seed on
two processors then part after a few epochs, and SET's pruning, which decides by ranks,
turns a rounding difference into another topology. Pinned, all three take their AVX2 path:

* ``ATEN_CPU_CAPABILITY=avx2`` (read by torch at its first vectorised operation);
* ``MKL_CBWR=COMPATIBLE,STRICT`` (MKL's conditional numerical reproducibility; its AVX2
  branch holds on Intel processors only, and MKL runs as ``AUTO`` on others, so the
  compatible branch, the same on every x86-64 processor, is the one that pins) and
  ``ONEDNN_MAX_CPU_ISA=AVX2`` (read at their first call);
* ``SYNAPSES_NATIVE_ARCH=x86-64-v3`` (the compiled kernels' instruction set; the library's
  own default on processors with AVX2, see :mod:`synapses.native`).

and, where unset, ``TORCHINDUCTOR_CACHE_DIR`` to a folder of the pinned processes' own
(:func:`pinned_inductor_cache`: torch's compile cache does not tell the two apart).

:func:`pin` sets them; it must run before torch computes anything, so the study's command
lines (``run``, ``sweep``) call it before they import torch, and the test suite's conftest
does too. ``SYNAPSES_ROUNDING=fastest`` leaves the processor's own paths (AVX512 where it
has it): faster, but a run made so repeats only on the same kind of processor.
:func:`in_effect` reads what a process actually computes with, whatever was asked.

This module imports torch only inside :func:`in_effect`, so importing it pins nothing by
accident and costs nothing.
"""

from __future__ import annotations

import getpass
import os
import platform
import re
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "SYNAPSES_NATIVE_ARCH": "x86-64-v3",
}
MODE_VARIABLE = "SYNAPSES_ROUNDING"
INDUCTOR_CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"  # set by pin() where unset: see pinned_inductor_cache
MODES = ("pinned", "fastest")
# The processor features that decide which paths the libraries may take.
DECIDING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile")


def mode() -> str:
    """``"pinned"`` (the default) or ``"fastest"``, from ``$SYNAPSES_ROUNDING``.

    Raises:
        ValueError: another value, named with the ones allowed.
    """
    value = os.environ.get(MODE_VARIABLE, "pinned").strip().lower() or "pinned"
    if value not in MODES:
        raise ValueError(f"{MODE_VARIABLE}={value!r}: use one of {', '.join(MODES)}")
    return value


def pinnable() -> bool:
    """Whether this processor can take the pinned paths: x86-64 with AVX2 and FMA."""
    flags = processor()["flags"]
    return platform.machine() in ("x86_64", "AMD64") and "avx2" in flags and "fma" in flags


def pin() -> bool:
    """Set :data:`PINNED_ENV` in this process's environment, overriding what was there,
    unless ``SYNAPSES_ROUNDING=fastest`` (then the compiled kernels are built for this
    processor's widest vectors, unless ``SYNAPSES_NATIVE_ARCH`` says otherwise) or the
    processor cannot take them. Call it before torch computes anything (see the module's
    docstring); returns whether it pinned.

    Raises:
        SystemExit: (code 2) ``$SYNAPSES_ROUNDING`` holds an unknown mode, named in one line.
    """
    try:
        chosen = mode()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if chosen == "fastest":
        os.environ.setdefault("SYNAPSES_NATIVE_ARCH", "native")
        return False
    if not pinnable():
        return False
    os.environ.update(PINNED_ENV)
    os.environ.setdefault(INDUCTOR_CACHE_VARIABLE, pinned_inductor_cache())
    return True


def pinned_inductor_cache() -> str:
    """The folder where ``torch.compile``'s inductor keeps its compiled graphs in a pinned
    process (unless ``$TORCHINDUCTOR_CACHE_DIR`` names one): torch's default,
    ``<temp>/torchinductor_<user>``, with ``_pinned_avx2`` appended.

    torch's compiled-graph cache is not keyed by ``ATEN_CPU_CAPABILITY``: a pinned process
    that finds a graph compiled by an unpinned one (AVX-512 here) loads it, and it computes
    wrong values (seen here with torch 2.14.1: a 12-SETLayer model at one thread, whose
    in-place ReLU after the first layer returned wrong values for half its elements; the
    same graph compiled pinned, into a fresh cache, matched eager). So pinned and unpinned
    processes keep separate caches."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers): torch falls back likewise
        user = str(os.getuid())
    user = re.sub(r"[^A-Za-z0-9_.-]", "_", user)
    return str(Path(tempfile.gettempdir()) / f"torchinductor_{user}_pinned_avx2")


@cache
def processor() -> dict[str, Any]:
    """This machine's processor: ``model`` (its name) and ``flags`` (those of
    :data:`DECIDING_FLAGS` it has, sorted)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {"model": model, "flags": sorted(flags & set(DECIDING_FLAGS))}


@cache
def _compiler() -> str:
    compiler = os.environ.get("CXX", "c++")
    try:
        first = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return f"{compiler}: not found"
    return first.splitlines()[0].strip() if first else compiler


def _blas() -> str:
    import torch

    shown = torch.__config__.show()
    found = re.search(r"Math Kernel Library Version ([\w.\-]+)", shown)
    if found:
        return f"MKL {found.group(1)}"
    found = re.search(r"BLAS_INFO=(\w+)", shown)
    return found.group(1) if found else "unknown"


def in_effect() -> dict[str, Any]:
    """What this process computes with: the processor, torch's CPU capability, the BLAS
    and its reproducibility setting, the compiled kernels' instruction set and compiler,
    and ``pinned`` (whether every setting of :data:`PINNED_ENV` is in force)."""
    import torch

    from synapses import native_arch

    capability = torch.backends.cpu.get_cpu_capability()
    found: dict[str, Any] = {
        "processor": processor(),
        "torch_cpu_capability": capability,
        "blas": _blas(),
        "mkl_cbwr": os.environ.get("MKL_CBWR", ""),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "native_arch": native_arch(),
        "compiler": _compiler(),
    }
    found["pinned"] = (
        capability == PINNED_ENV["ATEN_CPU_CAPABILITY"].upper()
        and found["mkl_cbwr"] == PINNED_ENV["MKL_CBWR"]
        and found["onednn_max_cpu_isa"] == PINNED_ENV["ONEDNN_MAX_CPU_ISA"]
        and found["native_arch"] == PINNED_ENV["SYNAPSES_NATIVE_ARCH"]
    )
    return found


def same_rounding(recorded: dict[str, Any], here: dict[str, Any]) -> tuple[bool, str]:
    """Whether a run recorded under ``recorded`` (an ``environment.json``) rounds as this
    process does under ``here`` (both with the keys of :func:`environment` in the engine:
    ``torch``, ``threads``, ``rounding``), and if not, why, in a few words.

    Pinned runs are meant to round alike on any processor with AVX2 (same torch and thread
    count, and the same compiler where a layer takes the compiled kernels); unpinned ones
    only on the same processor with the same settings. A run made before the rounding was
    recorded cannot be matched to anything. The settings compared are those requested of
    the libraries (MKL and oneDNN do not report what they applied)."""
    if "rounding" not in recorded:
        return False, "the run was made before its rounding was recorded (processor unknown)"
    for key in ("torch", "threads"):
        if recorded.get(key) != here.get(key):
            return False, f"{key} {recorded.get(key)} there, {here.get(key)} here"
    theirs, ours = recorded["rounding"], here["rounding"]
    keys = ["pinned", "torch_cpu_capability", "blas", "mkl_cbwr", "onednn_max_cpu_isa"]
    # the compiled kernels' build matters only to a run that computes with them
    if any(path.endswith(": native") for path in [*recorded.get("layers", []), *here.get("layers", [])]):
        keys += ["native_arch", "compiler"]
    if not (theirs.get("pinned") and ours.get("pinned")):
        keys.append("processor")
    for key in keys:
        if theirs.get(key) != ours.get(key):
            return False, f"{key} {theirs.get(key)} there, {ours.get(key)} here"
    return True, "same rounding"
