"""``python -m synapses.compile_kernels``: build the compiled CPU kernels now.

The explicit step that ``make setup`` runs, so that the first training step does not wait
for a build (about a minute, once per environment); where they cannot be built it says why
(the library then uses torch's CSR kernels). Exit status 0 when the kernels are ready.
"""

from __future__ import annotations

import argparse
import logging
import time

from .native import NativeKernelsUnavailable, load


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m synapses.compile_kernels",
        description="Build synapses' compiled CPU kernels now (once per environment).",
    ).parse_args(argv)
    logging.basicConfig(format="%(message)s")
    start = time.perf_counter()
    try:
        module = load()
    except NativeKernelsUnavailable as error:
        print(error)
        return 1
    print(f"synapses: compiled CPU kernels ready ({time.perf_counter() - start:.1f} s): {module.__file__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
