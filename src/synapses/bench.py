"""``python -m synapses.bench``: the benchmark, kept at this name (see
:mod:`synapses.study.bench`; needs ``pip install "synapses[study]"``)."""
import sys

from synapses.study.bench import main

if __name__ == "__main__":
    main()
    sys.exit(0)
