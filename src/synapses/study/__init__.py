"""The study: SET's input topology on MNIST (``pip install ".[study]"`` from a checkout).

Configs, data, the training engine and its run folders, sweeps, results, the report that
regenerates the write-up's tables, and the figures. Command lines: ``python -m
synapses.run``, ``python -m synapses.sweep`` and ``python -m synapses.report`` (aliases of
the modules here), ``python -m synapses.study.bench``, ``python -m synapses.study.facts``.
"""
