# Synapses: set up, test, benchmark, regenerate the figures and run the study.
#   make setup          .venv with torch (local wheels) and the package (editable)
#   make test           the test suite (what CI runs)
#   make test-fast      the same without the slow and end-to-end tests (about a minute)
#   make bench          SETLayer vs the dense masked reference, as ratios
#   make figures        run every notebook headlessly; PNGs land in figures/
#   make figures PROFILE=paper   the same at paper scale (needs the study's results)
#   make figures PROFILE=smoke   a quick check of the pipeline (figures in notebooks/executed/)
#   make study          every sweep in configs/ (resumable; results/ is committed)
#   make report         regenerate the tables and marked numbers of regularization.md from results/
#   make animations     the topology GIFs (figures/topology_*1000ep.gif) from the committed runs
#   make lab            JupyterLab on the notebooks (explore.ipynb: the interactive explorer)
PYTHON ?= .venv/bin/python
PROFILE ?= default
JOBS ?= 2
NOTEBOOKS := summary mnist_demo regularization_study pruning_mechanism extensions evolnet_triplet benchmark
EXECUTED := notebooks/executed

.PHONY: setup test test-fast bench figures animations lab study report clean

setup: .venv/.installed

.venv/.installed: pyproject.toml
	test -x $(PYTHON) || python3 -m venv .venv
	$(PYTHON) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PYTHON) -m pip install --quiet -e ".[dev,notebooks]"
	$(PYTHON) -m ipykernel install --sys-prefix --name python3 >/dev/null
	# strip notebook outputs on commit (a no-op outside a git checkout)
	-$(PYTHON) -m nbstripout --install --attributes .gitattributes 2>/dev/null
	touch $@

test: setup
	$(PYTHON) -m pytest -q

test-fast: setup
	$(PYTHON) -m pytest -q -m "not end_to_end and not slow"

bench: setup
	$(PYTHON) -m synapses.bench

# smoke runs and figures stay out of results/ and figures/
SMOKE_ARGS := $(if $(filter smoke,$(PROFILE)),-p figures_dir $(EXECUTED)/figures -p results_dir $(EXECUTED)/results)

figures: setup $(if $(filter smoke,$(PROFILE)),,animations)
	mkdir -p $(EXECUTED)
	for nb in $(NOTEBOOKS); do \
	  $(PYTHON) -m papermill --log-level WARNING -k python3 notebooks/$$nb.ipynb $(EXECUTED)/$$nb.ipynb -p profile $(PROFILE) $(SMOKE_ARGS) || exit 1; \
	done
	# the growing weight decay (1000 epochs) and the mechanism with inputs in [0, 1]
	$(PYTHON) -m papermill --log-level WARNING -k python3 notebooks/extensions.ipynb $(EXECUTED)/extensions_growing_l2.ipynb \
	  -p profile $(PROFILE) -p sweep_name growing_l2 $(SMOKE_ARGS)
	# the extensions that stayed positive without decay, at 1000 epochs, and the pruning of the unit-scaled ones
	$(PYTHON) -m papermill --log-level WARNING -k python3 notebooks/extensions.ipynb $(EXECUTED)/extensions_1000.ipynb \
	  -p profile $(PROFILE) -p sweep_name extensions_1000 $(SMOKE_ARGS)
	$(PYTHON) -m papermill --log-level WARNING -k python3 notebooks/pruning_mechanism.ipynb $(EXECUTED)/pruning_mechanism_unit_e1000.ipynb \
	  -p profile $(PROFILE) -p inputs unit $(if $(filter smoke,$(PROFILE)),,-p epochs 1000) -y "weight_decays: [0.0]" $(SMOKE_ARGS)
	$(PYTHON) -m papermill --log-level WARNING -k python3 notebooks/pruning_mechanism.ipynb $(EXECUTED)/pruning_mechanism_unit_never_inked_e1000.ipynb \
	  -p profile $(PROFILE) -p inputs unit $(if $(filter smoke,$(PROFILE)),,-p epochs 1000) -y "weight_decays: [0.0]" -p blank_below 1e-6 $(SMOKE_ARGS)
	$(PYTHON) -m papermill --log-level WARNING -k python3 notebooks/pruning_mechanism.ipynb $(EXECUTED)/pruning_mechanism_unit.ipynb \
	  -p profile $(PROFILE) -p inputs unit -y "weight_decays: [0.0, 0.001]" $(SMOKE_ARGS)
	# both again with only the pixels never inked counted as blank
	$(PYTHON) -m papermill --log-level WARNING -k python3 notebooks/pruning_mechanism.ipynb $(EXECUTED)/pruning_mechanism_never_inked.ipynb \
	  -p profile $(PROFILE) -p blank_below 1e-6 $(SMOKE_ARGS)
	$(PYTHON) -m papermill --log-level WARNING -k python3 notebooks/pruning_mechanism.ipynb $(EXECUTED)/pruning_mechanism_unit_never_inked.ipynb \
	  -p profile $(PROFILE) -p inputs unit -y "weight_decays: [0.0, 0.001]" -p blank_below 1e-6 $(SMOKE_ARGS)

animations: setup
	$(PYTHON) -m synapses.study.animate

lab: setup
	$(PYTHON) -m jupyter lab notebooks/

study: setup
	$(PYTHON) -m synapses.sweep configs/*.yaml --jobs $(JOBS)

report: setup
	$(PYTHON) -m synapses.report regularization.md

clean:
	rm -rf $(EXECUTED) .pytest_cache
