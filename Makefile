# Everything a fresh clone needs goes through these targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := False
PYTEST_ARGS ?=
# pytest processes (pytest-xdist), one test file each at a time: 0 = one process, no xdist
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

.DEFAULT_GOAL := help

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

.PHONY: help env browser app run test test-fast lint bench clean
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

env: $(BIN)/.installed ## Create the virtual environment (.venv) with the project installed

run: env ## Create the environment and run the whole pipeline (dvc repro) on the embedded sample
	dvc repro

browser: ## Install Chromium and chromedriver from Debian's packages (the page's browser tests; needs root)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; else \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; fi

app: env ## Serve the page for checking photos with the champion (http://127.0.0.1:8000)
	$(BIN)/realfake app

test: env browser ## Create the environment and run the whole test suite (as CI does)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

lint: env ## Check the code with ruff (pyflakes, import order, 120 columns, docstrings on public names)
	$(BIN)/ruff check src tests pipeline benchmarks tools

test-fast: env browser ## Run the tests without the slow end-to-end ones
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

bench: env ## Run the benchmarks (prints images/s)
	$(BIN)/python benchmarks/bench_sample.py
	$(BIN)/python benchmarks/bench_validate.py

clean: ## Remove the pipeline's outputs from the workspace (the DVC cache keeps them)
	rm -rf data/raw data/heldout data/manifest.parquet data/packed reports
