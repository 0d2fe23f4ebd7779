"""``python -m synapses_study.bench``: the kernels against the dense reference and the peers
(:mod:`synapses_study.bench.kernels`)."""

from .kernels import main

main()
