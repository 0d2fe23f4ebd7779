"""Where files live, the run configuration and sweep files, the notebooks' parameters, MNIST
and its transforms."""
