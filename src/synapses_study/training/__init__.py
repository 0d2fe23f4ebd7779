"""Training: the network and optimizer built from a config, the decay policy, the pinned
rounding, the engine, one run and sweeps."""
