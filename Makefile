# The two commands a newcomer needs: `make demo` (the main job) and `make test` (the tests).
# `make demo` executes the six chapters (cpu profile) into outputs/notebooks/ (.ipynb + HTML);
# `make demo-cli` runs the same pipeline with the `audiocls` command instead.
# Each creates or refreshes .venv on its own; it reinstalls only when pyproject.toml or
# constraints.txt changes. `make demo`/`make lab` install what a learner needs (extra `lab`);
# `make test` adds the test, lint and export tools (extra `dev`). constraints.txt pins the
# PyTorch trio the tests ran on; pyproject.toml itself accepts any recent consistent trio.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/python -m pip install --progress-bar off -c constraints.txt
LAB_STAMP := $(VENV)/.installed-lab
DEV_STAMP := $(VENV)/.installed-dev
DEMO_DIR ?= outputs/demo

.PHONY: demo demo-cli test bench lab install dashboard colab clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(LAB_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@echo "==> Installing audiocls_utils for the chapters into $(VENV)"
	@echo "    (the first time this downloads PyTorch, about 5 GB with CUDA; later runs reuse it)"
	$(PIP_INSTALL) -e ".[lab]"
	@touch $(LAB_STAMP)

$(DEV_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@echo "==> Installing audiocls_utils with its test, lint and export tools into $(VENV)"
	@echo "    (the first time this downloads PyTorch, about 5 GB with CUDA; later runs reuse it)"
	$(PIP_INSTALL) -e ".[dev]"
	@touch $(DEV_STAMP) $(LAB_STAMP)

install: $(DEV_STAMP)

test: $(DEV_STAMP)
	@bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest

# Time the original recipe's per-item data pipeline against this project's (a few minutes on 2 cores);
# writes benchmarks/results/bench_pipeline.json. More clips: make bench BENCH_ARGS="--clips 256".
bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py $(BENCH_ARGS)

demo: $(LAB_STAMP)
	$(BIN)/python scripts/run_notebooks.py --out outputs/notebooks

demo-cli: $(LAB_STAMP)
	$(BIN)/python scripts/demo_cli.py --out $(DEMO_DIR)

dashboard: $(LAB_STAMP)
	$(BIN)/audiocls dashboard

# Colab: write your copy's git URL into every notebook's install cell, once (make colab REPO=...).
colab: $(LAB_STAMP)
	$(BIN)/python scripts/set_course_repo.py "$(REPO)"

lab: $(LAB_STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf outputs .pytest_cache
