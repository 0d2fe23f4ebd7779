"""``python -m synapses.report``: the study's command line, kept at this name (see
:mod:`synapses.study.report`; needs ``pip install "synapses[study]"``)."""
import sys

from synapses.study.report import main

if __name__ == "__main__":
    sys.exit(main())
