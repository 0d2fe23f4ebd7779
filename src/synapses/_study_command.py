"""The study's command lines kept at the library's names (``python -m synapses.run`` ...).

They need the study's packages (pandas, torchvision, ...), which a library install lacks:
then they say so in one line and exit with status 2 instead of a traceback.
"""
from __future__ import annotations

import importlib
import sys

# the study extra's packages, by import name (pyproject.toml's [study])
STUDY_PACKAGES = {"pandas", "torchvision", "tqdm", "yaml", "submitit", "scipy", "matplotlib", "sklearn"}


def run_study_command(module: str) -> int:
    """Run ``synapses.study.<module>``'s ``main()`` and return its exit status (0 for None).
    The study's modules import some packages only when a command needs them, so a missing
    one can surface inside ``main()`` too; other import errors are not this one's to hide."""
    try:
        return importlib.import_module(f"synapses.study.{module}").main() or 0
    except ImportError as error:
        missing = (error.name or "").split(".")[0]
        if missing not in STUDY_PACKAGES:
            raise
        print(f"python -m synapses.{module} is the study's command and needs its packages ({missing}): "
              "pip install '.[study]' from a checkout of this repository", file=sys.stderr)
        return 2
