# cometa: two commands do everything on a fresh machine.
#   make demo   set-up, then the whole study on the embedded demo corpus, then the report
#   make test   set-up, then the test suite
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

.PHONY: setup demo test bench dashboard report corpus clean-runs help

help:
	@echo "make demo       set-up + the whole study (3 strategies) on the demo corpus + report"
	@echo "make test       set-up + pytest"
	@echo "make dashboard  serve the dashboard over runs/ (RUNS=dir1,dir2 PORT=$(PORT) ADDRESS=$(ADDRESS))"
	@echo "make bench      the benchmark suite (prints ratios, writes bench/results.json)"
	@echo "make corpus     build the demo corpus only"

setup:
	@bash tools/setup_env.sh

demo: setup
	$(PY) -m cometa run --preset demo --run-dir $(RUN_DIR)

corpus: setup
	$(PY) -m cometa corpus --preset demo

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench

RUNS ?= runs
dashboard: setup
	$(PY) -m cometa dashboard $(RUNS) --port $(PORT) --address $(ADDRESS)

report: setup
	$(PY) -m cometa report $(RUN_DIR)
