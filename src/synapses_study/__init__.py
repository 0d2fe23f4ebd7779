"""The study: SET's input topology on MNIST, a distribution of its own (synapses-study,
this folder's pyproject.toml) built on the library ``synapses``; ``make setup`` installs both.

Configs, data, the training engine and its run folders, sweeps, results, the report that
regenerates the write-up's tables, and the figures. Command lines: ``python -m
synapses_study.training.run`` (one run), ``python -m synapses_study.training.sweep`` (a sweep file),
``python -m synapses_study.writeup.report`` (the write-up's numbers), ``python -m synapses_study.bench``
(the kernels against the dense reference), ``python -m synapses_study.writeup.facts``.
"""
