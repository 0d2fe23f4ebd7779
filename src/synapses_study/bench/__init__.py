"""Measurements of the library: kernels against peers (``python -m synapses_study.bench``),
scale, memory, the auto rule, what pinning costs; docs blocks they write."""
