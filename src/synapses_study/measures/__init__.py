"""What a network's topology and training measure, used by training and reading alike: the
topology's per-pixel counts, ink correlations, survivors."""
