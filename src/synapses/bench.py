"""``python -m synapses.bench``: the study's command line, kept at this name (see
:mod:`synapses.study.bench`; needs the study's packages: ``pip install ".[study]"``)."""
import sys

from synapses._study_command import run_study_command

if __name__ == "__main__":
    sys.exit(run_study_command("bench"))
