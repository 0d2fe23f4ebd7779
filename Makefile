# Synapses: set up, test, benchmark, regenerate the figures and the study.
PYTHON ?= .venv/bin/python
PIP := $(PYTHON) -m pip
PROFILE ?= default

.PHONY: setup test bench figures study clean

setup: .venv/.installed  ## create .venv with torch (local wheels) and the package in editable mode

.venv/.installed: pyproject.toml
	test -x $(PYTHON) || python3 -m venv .venv
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e ".[dev,notebooks]"
	$(PYTHON) -m ipykernel install --user --name python3 >/dev/null
	touch $@

test: setup  ## run the test suite
	$(PYTHON) -m pytest -q

bench: setup  ## speed of SETLayer vs the dense masked reference (ratios)
	$(PYTHON) -m synapses.bench

clean:
	rm -rf notebooks/executed .pytest_cache
