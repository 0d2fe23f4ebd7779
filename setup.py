"""The library's build: its metadata is in pyproject.toml; this file adds the compiled CPU
kernels (src/synapses/csrc/sparse_linear.cpp) as a torch C++ extension, ``synapses._kernels``,
when torch is importable where the package is built:

    pip wheel . --no-build-isolation      # a wheel with the kernels, built against this torch
    pip install . --no-build-isolation    # the same, installed

Beside the extension goes ``synapses/_kernels_build.json``, the record of what it was built
against (torch's version and C++ ABI, Python, the flags, the source's SHA-256);
``synapses.native`` uses the built kernels only where all of it matches, and otherwise builds
them at first use as before, saying why. Where torch is not importable (pip's default
isolated build) or there is no C++ compiler, the wheel holds no kernels and nothing changes
from before: they are built at first use or by ``python -m synapses.compile_kernels``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
from pathlib import Path

from setuptools import setup

SOURCE = Path("src/synapses/csrc/sparse_linear.cpp")
# the instruction set of synapses.native.PORTABLE_ARCH: AVX2 and FMA, so that the kernels
# run, and round alike, on every x86-64 processor that has them; elsewhere none is built in
FLAGS = ["-O3", "-march=x86-64-v3", "-fopenmp"]  # as synapses.native.cflags(): OpenMP for at::parallel_for


def _kernels() -> tuple[list, dict]:
    """The extension and its build command, or nothing where it cannot be built here."""
    if os.environ.get("SYNAPSES_NO_NATIVE") or platform.machine() not in ("x86_64", "AMD64"):
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:  # pip's isolated build: no torch to build against
        return [], {}
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        print("synapses: no C++ compiler: the wheel holds no compiled kernels (built at first use)", file=sys.stderr)
        return [], {}

    class BuildAndRecord(BuildExtension):
        """torch's extension build, then the record of what the kernels were built against."""

        def run(self) -> None:
            super().run()
            record = {
                "torch": torch.__version__,
                "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
                "python": "{}.{}".format(*sys.version_info[:2]),
                "cflags": FLAGS,
                "source_sha256": hashlib.sha256(SOURCE.read_bytes()).hexdigest(),
            }
            target = Path(self.build_lib) / "synapses" / "_kernels_build.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(record, indent=1) + "\n")

    # -g0: no debugging symbols (11 MB of the wheel otherwise); the code is the same
    extension = CppExtension(
        "synapses._kernels", [str(SOURCE)], extra_compile_args=[*FLAGS, "-g0"], extra_link_args=["-fopenmp"]
    )
    return [extension], {"build_ext": BuildAndRecord}


ext_modules, cmdclass = _kernels()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
