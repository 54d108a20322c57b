# Every target creates .venv on first use. torch is pinned to the CPU build that pip finds
# locally; an unpinned torch would pull a CUDA build of several GB.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TORCH := torch==2.13.0
RUNS ?= runs

.PHONY: help setup test test-slow train analyze bench bench-train bench-subsets lint clean

help:
	@echo "make test       run the test suite (<10 min on 2 cores)"
	@echo "make train      train and evaluate the paper's model (d_model 32, 16 heads) in $(RUNS)/paper"
	@echo "make analyze    measure every head of that model into $(RUNS)/paper/analysis"
	@echo "make bench      training speed (full sequences vs bags) and all-subsets analysis speed"
	@echo "make lint       ruff check and format check"
	@echo "make test-slow  the slow tests (end-to-end training to full accuracy)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

train: $(STAMP)
	$(VENV)/bin/headcoop train --out $(RUNS)/paper --resume

analyze: train
	$(VENV)/bin/headcoop analyze $(RUNS)/paper --out $(RUNS)/paper/analysis

bench: bench-train bench-subsets

bench-train: $(STAMP)
	$(PY) scripts/bench_train.py

bench-subsets: train
	$(PY) scripts/bench_subsets.py $(RUNS)/paper

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts examples
	$(VENV)/bin/ruff format --check src tests scripts examples

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
