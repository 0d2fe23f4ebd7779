"""``python -m synapses.run``: the study's command line, kept at this name (see
:mod:`synapses.study.run`; needs ``pip install "synapses[study]"``)."""
import sys

from synapses.study.run import main

if __name__ == "__main__":
    sys.exit(main())
