# The two commands a newcomer needs: `make demo` (the main job) and `make test` (the tests).
# `make demo` executes the four notebooks (cpu profile) into outputs/notebooks/ (.ipynb + HTML);
# `make demo-cli` runs the same pipeline with the `audiocls` command instead.
# Each creates or refreshes .venv on its own; it reinstalls only when pyproject.toml changes.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= outputs/demo

.PHONY: demo demo-cli test bench lab install dashboard clean

$(STAMP): pyproject.toml
	@echo "==> Installing audiocls_utils and its dependencies into $(VENV)"
	@echo "    (the first time this downloads PyTorch, about 5 GB; later runs reuse it)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	@bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest

# Time the original recipe's per-item data pipeline against this project's (a few minutes on 2 cores);
# writes benchmarks/results/bench_pipeline.json. More clips: make bench BENCH_ARGS="--clips 256".
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py $(BENCH_ARGS)

demo: $(STAMP)
	$(BIN)/python -m audiocls_utils.engine.notebooks --out outputs/notebooks

demo-cli: $(STAMP)
	$(BIN)/python -m audiocls_utils.engine.demo --out $(DEMO_DIR)

dashboard: $(STAMP)
	$(BIN)/audiocls dashboard

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf outputs .pytest_cache
