# Synapses: set up, test, benchmark, regenerate the figures and run the study.
#   make setup          .venv with torch (local wheels) and the package (editable)
#   make test           the test suite (what CI runs)
#   make test-all       the same with every notebook's further figure runs (smoke profile)
#   make test-fast      the same without the slow and end-to-end tests: several minutes, more on a
#                       loaded machine (it trains many tiny runs); pytest ends with its wall time and
#                       the slowest tests
#   make lint           what the tests check of the code's form: ruff (rules and formatting) and mypy
#   make format         format the code and apply ruff's safe fixes (then make lint)
#   make bench          SETLayer vs the dense masked reference, as ratios
#   make gpu-check      on a GPU machine: the CUDA tests, then the GPU benchmark and scale run
#   make -j2 figures    execute the notebook runs of notebooks/runs/ that are out of date; PNGs land in figures/
#   make figures PROFILE=smoke   a quick check of the pipeline (everything in notebooks/executed/smoke/)
#   make study          every sweep in configs/ (resumable; results/ is committed)
#   make report         regenerate the tables and marked numbers of regularization.md from results/
#   make animations     the topology GIFs (figures/topology_*1000ep.gif) from the committed runs
#   make lab            JupyterLab on the notebooks (explore.ipynb: the interactive explorer)
#   make site           the study as a static site in _build/site/ (open _build/site/index.html); PROFILE=smoke
#                       shows the notebooks' smoke outputs (what CI builds)
PYTHON ?= .venv/bin/python
PROFILE ?= default
JOBS ?= 2
EXECUTED := notebooks/executed
# the library (the root pyproject.toml) and the study (src/synapses_study/pyproject.toml)
INSTALL := -e . -e "src/synapses_study[dev,notebooks]"
# A download that arrives damaged fails pip's hash check and is not retried by pip itself
# (CI once lost a run to one corrupted wheel), so each install gets three tries.
pip_install = for try in 1 2 3; do $(PYTHON) -m pip install --quiet $(1) && break; \
	test $$try -lt 3 || exit 1; echo "pip install failed (try $$try of 3); trying again in 10 s" >&2; sleep 10; done

.PHONY: setup test test-all test-fast lint format bench gpu-check figures figure-runs animations lab study report clean site site-notebooks
# a recipe that fails removes what it had begun to write (the notebook runner writes an
# executed copy as it goes, and on an error too), so that no half-run copy is taken as up to date
.DELETE_ON_ERROR:

setup: .venv/.installed

.venv/.installed: pyproject.toml src/synapses_study/pyproject.toml
	test -x $(PYTHON) || python3 -m venv .venv
	$(call pip_install,torch==2.14.1 torchvision==0.29.1)
	$(call pip_install,$(INSTALL))
	$(PYTHON) -m ipykernel install --sys-prefix --name python3 >/dev/null
	# the compiled CPU kernels, built here rather than at the first training step (about a
	# minute; where they cannot be built, the library uses torch's CSR kernels and says why)
	-$(PYTHON) -m synapses.compile_kernels
	# strip notebook outputs on commit (a no-op outside a git checkout)
	-$(PYTHON) -m nbstripout --install --attributes .gitattributes 2>/dev/null
	# the kernel's language_info (its Python version) is what JupyterLab writes on opening
	-git config filter.nbstripout.extrakeys metadata.language_info 2>/dev/null
	touch $@

test: setup
	$(PYTHON) -m pytest -q --durations=12 -m "not figure_variant"

test-all: setup
	$(PYTHON) -m pytest -q --durations=12

test-fast: setup
	$(PYTHON) -m pytest -q --durations=12 -m "not end_to_end and not slow"

# the paths test_lint.py checks
LINTED := src tests examples notebooks

lint: setup
	$(PYTHON) -m ruff check $(LINTED)
	$(PYTHON) -m ruff format --check $(LINTED)
	$(PYTHON) -m mypy --ignore-missing-imports src

format: setup
	$(PYTHON) -m ruff format $(LINTED)
	$(PYTHON) -m ruff check --fix $(LINTED)

bench: setup
	$(PYTHON) -m synapses_study.bench

# One command for a borrowed GPU: every test that needs CUDA (marked by tests/conftest.py),
# the benchmark on the device, and the 1-million-neuron scale run.
gpu-check: setup
	$(PYTHON) -m pytest -q -m cuda -rs
	$(PYTHON) -m synapses_study.bench --device cuda --no-epoch --repeats 100
	$(PYTHON) -m synapses_study.bench --scale --device cuda --hidden 250000 --layers 4

# The figure runs are declared in notebooks/runs/, one file per executed notebook, and made
# by one rule per run file below: its executed copy depends on the run file, its notebook,
# the library's and the study's code, and a digest of what it reads (the sweep files and,
# for the default profile, the metrics of the runs it reads), which the figure_runs module
# rewrites, when make reads this file, only where it changed; so `make -j2 figures`
# re-executes only what is out of date. Smoke copies, figures and runs go to
# notebooks/executed/smoke/, never to figures/ or results/.
EXECUTED_DIR := $(if $(filter smoke,$(PROFILE)),$(EXECUTED)/smoke,$(EXECUTED))
FIGURE_RUNS := $(patsubst notebooks/runs/%.yaml,$(EXECUTED_DIR)/%.ipynb,$(wildcard notebooks/runs/*.yaml))
STUDY_CODE := $(wildcard src/synapses/*.py src/synapses_study/*.py src/synapses_study/*/*.py)
DIGESTS := $(patsubst $(EXECUTED_DIR)/%.ipynb,$(EXECUTED_DIR)/inputs/%.digest,$(FIGURE_RUNS))
DIGEST_COMMAND := $(PYTHON) -m synapses_study.figures.figure_runs digests --executed $(EXECUTED_DIR) \
	$(if $(filter smoke,$(PROFILE)),--no-results)
# the digests, when an executed copy may be made; where the environment is not set up yet,
# the rule below writes them all once it is
ifneq ($(filter figures figure-runs site site-notebooks $(EXECUTED)/%,$(MAKECMDGOALS)),)
ifneq ($(wildcard $(PYTHON)),)
ifneq ($(shell $(DIGEST_COMMAND) >&2; echo $$?),0)
$(error the figure runs' digests could not be written: figure_runs digests failed (its message is above))
endif
endif
endif

figures: setup $(if $(filter smoke,$(PROFILE)),,animations) figure-runs

figure-runs: setup $(FIGURE_RUNS)

# the notebook of run NAME[@VARIANT] is notebooks/NAME.ipynb; the kernels draw inline
# (MPLBACKEND unset: CI sets Agg, which would leave no figure in the copies the site shows)
.SECONDEXPANSION:
$(FIGURE_RUNS): $(EXECUTED_DIR)/%.ipynb: notebooks/runs/%.yaml notebooks/$$(firstword $$(subst @, ,$$*)).ipynb \
		$(STUDY_CODE) $(EXECUTED_DIR)/inputs/%.digest | .venv/.installed
	env -u MPLBACKEND $(PYTHON) -m synapses_study.figures.figure_runs execute $* --profile $(PROFILE) --output $@

# one command writes every digest (a grouped target: made once, not once per run)
$(DIGESTS) &: | .venv/.installed
	$(DIGEST_COMMAND)


animations: setup
	$(PYTHON) -m synapses_study.figures.animate

# The site (Jupyter Book 1, configured in _config.yml): the write-up, docs/ and each notebook's
# first figure run, executed by the pipeline above (only those copies that are out of date);
# synapses_study.figures.site writes the table of contents and the provenance pages, then builds with
# warnings as errors. The kernels draw inline (MPLBACKEND unset: CI sets Agg, which shows no
# figure in a notebook's outputs).
site: setup site-notebooks
	$(PYTHON) -m synapses_study.figures.site build --executed $(EXECUTED_DIR) --profile $(PROFILE)

# (the runs are asked for only when this target is made, not on every make)
ifneq ($(filter site site-notebooks,$(MAKECMDGOALS)),)
ifeq ($(wildcard $(PYTHON)),)
$(error make site reads which notebook runs the site shows from the study's code: run `make setup` first)
endif
SITE_RUNS := $(shell $(PYTHON) -m synapses_study.figures.site runs)
site-notebooks: $(addprefix $(EXECUTED_DIR)/,$(addsuffix .ipynb,$(SITE_RUNS)))
endif

# as root (a container, CI) JupyterLab needs --allow-root
lab: setup
	$(PYTHON) -m jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

study: setup
	$(PYTHON) -m synapses_study.training.sweep configs/*.yaml --jobs $(JOBS)

report: setup
	$(PYTHON) -m synapses_study.writeup.report regularization.md

clean:
	rm -rf $(EXECUTED) .pytest_cache
