# cometa: two commands do everything on a fresh machine.
#   make demo   set-up, then the whole study on the embedded demo corpus, then the report
#   make test   set-up, then the linters (make lint), then the test suite
#   make lab    set-up, then JupyterLab on the exploration notebooks (127.0.0.1, token printed)
# The venv lives in a cache dir keyed by the hash of requirements.txt (override with COMETA_VENV=...).
SHELL := /bin/bash
COMETA_VENV ?= $(shell tools/venv_path.sh)
PY := $(COMETA_VENV)/bin/python
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
export COMETA_VENV
RUN_DIR ?= runs/demo
PORT ?= 5006
ADDRESS ?= 127.0.0.1
PYTEST_ARGS ?=
LAB_PORT ?= 8888
LAB_TOKEN ?=

.PHONY: setup demo test lint lab bench dashboard report corpus clean-runs help study

help:
	@echo "make demo       set-up + the whole study (3 strategies) on the demo corpus + report"
	@echo "make test       set-up + make lint + pytest"
	@echo "make lint       ruff over the whole repository, mypy over cometa/ and dashboards/ (pyproject.toml)"
	@echo "make lab        JupyterLab on notebooks/explore, 127.0.0.1:$(LAB_PORT) (LAB_PORT=..., LAB_TOKEN=...)"
	@echo "make dashboard  serve the dashboard over runs/ (RUNS=dir1,dir2 PORT=$(PORT) ADDRESS=$(ADDRESS))"
	@echo "make bench      the benchmark suite (prints ratios, writes bench/results.json)"
	@echo "make corpus     build the demo corpus only"
	@echo "make study SPEC=reports/studies/NAME.yaml   run a committed study, its report into reports/NAME/"

setup:
	@bash tools/setup_env.sh

demo: setup
	$(PY) -m cometa run --preset demo --run-dir $(RUN_DIR)

# a committed study: run (or resume) it, each cell starting from what the demo study finished with the same
# inputs, and copy its report to reports/<name>/ (the spec's file name is its name)
FROM ?= runs/studies/demo
study: setup
	@test -n "$(SPEC)" || { echo "make study: give SPEC=reports/studies/NAME.yaml"; exit 2; }
	$(PY) -m cometa study $(SPEC) --report-dir reports/$(basename $(notdir $(SPEC))) \
	  $$([ -d "$(FROM)" ] && [ "$(SPEC)" != reports/studies/demo.yaml ] && echo --from $(FROM))

corpus: setup
	$(PY) -m cometa corpus --preset demo

# the linters first: a lint or type error fails `make test` before the (minutes-long) suite starts.
# The suite runs in TEST_WORKERS pytest-xdist processes (default: the cores, at most 4) of one thread each:
# on 2 cores that takes ~0.8x the time of one process with 2 threads, whose tests wait on one another's
# threads as much as they compute (bench/TIMINGS.md). `worksteal` keeps both busy to the end; the shared
# tiny run is made once, by the first worker that needs it (tests/conftest.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))
test: lint
	$(if $(filter 0,$(TEST_WORKERS)),$(PY) -m pytest -q $(PYTEST_ARGS),\
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
	  $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS))

# mypy's incremental cache lives beside the venv (keyed by the pins, kept by CI's venv cache): a fresh clone
# re-checks only what changed (0.6 s warm against ~20 s cold); mypy validates every cached file itself
lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy --cache-dir "$(COMETA_VENV)/.mypy_cache"

# JupyterLab from the venv, on loopback only, with a token (LAB_TOKEN, else a fresh random one) that is
# printed; the server and its kernels run in this checkout with it on PYTHONPATH (exported above). The kernels
# get the OPENBLAS_CORETYPE that the pipeline gives its own (cometa.core.blas.apply_openblas_coretype): faiss's
# k-means in a notebook then runs the same kernels as in `make demo`. A value the user set is kept.
lab: setup
	@coretype="$$($(PY) -m cometa.core.blas --coretype)" || exit 2; \
	if [ -n "$$coretype" ]; then export OPENBLAS_CORETYPE="$$coretype"; fi; \
	token="$(LAB_TOKEN)"; [ -n "$$token" ] || token="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(24))')"; \
	echo "cometa: JupyterLab at http://127.0.0.1:$(LAB_PORT)/lab/tree/notebooks/explore?token=$$token"; \
	echo "cometa: kernels import this checkout ($(CURDIR)); stop with Ctrl-C"; \
	exec $(PY) -m jupyter lab --ip 127.0.0.1 --port $(LAB_PORT) --ServerApp.port_retries=0 --no-browser \
	  --IdentityProvider.token="$$token" --ServerApp.root_dir="$(CURDIR)" \
	  --LabApp.default_url=/lab/tree/notebooks/explore $$([ "$$(id -u)" = 0 ] && echo --allow-root)

bench: setup
	$(PY) -m bench

RUNS ?= runs
dashboard: setup
	$(PY) -m cometa dashboard $(RUNS) --port $(PORT) --address $(ADDRESS)

report: setup
	$(PY) -m cometa report $(RUN_DIR)
