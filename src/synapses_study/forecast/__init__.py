"""The forecast from a configuration alone: the birth-death model, its fitted constants, the
command (``python -m synapses_study.forecast FILE``) and its scoring."""
