"""``python -m synapses.sweep``: the study's command line, kept at this name (see
:mod:`synapses.study.sweep`; needs ``pip install "synapses[study]"``)."""
import sys

from synapses.study.sweep import main

if __name__ == "__main__":
    sys.exit(main())
