# Every target creates .venv on first use. torch is pinned to the CPU build that pip finds
# locally; an unpinned torch would pull a CUDA build of several GB.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TORCH := torch==2.13.0
RUNS ?= runs

.PHONY: help setup chromium test test-tl3 test-slurm test-slow fuzz trace successor cooperation figures claims train analyze bench bench-train bench-subsets bench-sweep bench-fused bench-analyze bench-explorer bench-search explore lint clean

help:
	@echo "make figures    every figure and Table 1 of the paper, and figures/index.html"
	@echo "                (QUICK=1: small sweeps into $(RUNS)/figures-quick, about a minute)"
	@echo "                (PLAN=calibrated: under the claims lab's selected setting, into figures/calibrated)"
	@echo "make claims     the claims lab: which training choices make the paper's findings hold"
	@echo "                (QUICK=1: a small grid in seconds)"
	@echo "make test       run the test suite (<10 min on 2 cores)"
	@echo "make train      train and evaluate the paper's model (d_model 32, 16 heads) in $(RUNS)/paper"
	@echo "make analyze    measure every head of that model into $(RUNS)/paper/analysis"
	@echo "make explore    that model's head explorer: $(RUNS)/paper/explore/explorer.html"
	@echo "make bench      speed: full sequences vs bags, stacked sweeps, CPU kernel, all-subsets"
	@echo "                (QUICK=1: every bench on small inputs, in about four minutes)"
	@echo "make trace      attention decomposition: 3 induction models and a Count01 model, traced"
	@echo "make successor  successor heads: 5 one-layer models and a two-layer one, scored and steered"
	@echo "make cooperation do heads compete or cooperate? every task's models x 3 seeds, their"
	@echo "                interactions in $(RUNS)/cooperation (QUICK=1: small splits, two epochs)"
	@echo "make lint       ruff check and format check"
	@echo "make test-tl3   the suite under transformer-lens 3 (own venv), then 4 vs 3 side by side"
	@echo "make test-slurm a one-node Slurm cluster here (as root), then figures and a claims"
	@echo "                search through it, byte for byte against in-process runs, and a scancel"
	@echo "make test-slow  the slow tests (end-to-end training to full accuracy)"
	@echo "make fuzz       2,000 random command lines and corrupt checkpoints (FUZZ_CASES=N), then"
	@echo "                hostile inputs by class: peak memory and time to refuse of each"

# transformer-lens 3 in a venv of its own: the whole suite, then the two versions side by side.
VENV_TL3 := .venv-tl3
STAMP_TL3 := $(VENV_TL3)/.installed-stamp
TL3 := transformer-lens>=3.9,<4

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

$(STAMP_TL3): pyproject.toml
	test -x $(VENV_TL3)/bin/python || $(PYTHON) -m venv $(VENV_TL3)
	$(VENV_TL3)/bin/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(VENV_TL3)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' '$(TL3)'
	touch $(STAMP_TL3)

test-tl3: $(STAMP) $(STAMP_TL3) chromium
	$(VENV_TL3)/bin/python -m pytest -q -p no:cacheprovider
	$(PY) scripts/check_tl_versions.py --other $(VENV_TL3)/bin/python

# PNG export (kaleido) and the browser tests need a Chromium, and the explorer's test its
# driver. Install Debian's when either is missing and we are root; otherwise say so: PNGs are
# then skipped and so are the tests.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium and chromium-driver (PNGs, browser tests)"; \
	    { apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && \
	        apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; }; } || \
	    echo "chromium could not be installed: PNGs and the browser tests will be skipped"; \
	  else \
	    echo "no chromium, and no root to install it: PNGs and the browser tests will be skipped"; \
	  fi; }

test: $(STAMP) chromium
	$(PY) -m pytest -q

# A real one-node Slurm cluster on this machine (scripts/slurm_cluster.sh installs and starts
# Debian's slurm-wlm and munge as root, or says why it cannot and the target is skipped), then
# scripts/check_slurm.py: Slurm runs against in-process runs, byte for byte, and a scancel.
test-slurm: $(STAMP)
	$(PY) scripts/check_slurm.py

figures: $(STAMP) chromium
ifdef QUICK
	$(VENV)/bin/headcoop figures --quick --out $(RUNS)/figures-quick --cache $(RUNS)/figures \
	  --claims $(RUNS)/claims-quick
else ifeq ($(PLAN),calibrated)
	@test -e $(RUNS)/claims/selected.json || $(MAKE) claims
	$(VENV)/bin/headcoop figures --calibrated $(RUNS)/claims --out figures/calibrated \
	  --cache $(RUNS)/figures --claims $(RUNS)/claims
else
	$(VENV)/bin/headcoop figures --out figures --cache $(RUNS)/figures --claims $(RUNS)/claims
endif

# The claims lab: a grid of training choices x 5 seeds, every claim judged on every model.
claims: $(STAMP) chromium
ifdef QUICK
	$(VENV)/bin/headcoop claims --quick --out $(RUNS)/claims-quick --cache $(RUNS)/figures
else
	$(VENV)/bin/headcoop claims --out $(RUNS)/claims --cache $(RUNS)/figures
endif

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

fuzz: $(STAMP)
	$(PY) -m pytest -q -s -m fuzz tests/test_fuzz.py

train: $(STAMP)
	$(VENV)/bin/headcoop train --out $(RUNS)/paper --resume

analyze: train
	$(VENV)/bin/headcoop analyze $(RUNS)/paper --out $(RUNS)/paper/analysis

explore: train
	$(VENV)/bin/headcoop explore $(RUNS)/paper --out $(RUNS)/paper/explore

# Sparse attention decomposition: two-layer induction models (3 seeds) and the paper's Count01
# model, trained once (reruns only trace) and traced into $(RUNS)/trace/*/trace.
INDUCTION := --task induction --n-layers 2 --positional --no-layernorm --n-ctx 17 --d-model 32 \
	--n-heads 4 --d-head 8 --epochs 12 --lr 3e-3 --dropout 0
trace: $(STAMP)
	@for seed in 0 1 2; do \
	  run=$(RUNS)/trace/induction_$$seed; \
	  test -e $$run/final || $(VENV)/bin/headcoop train $(INDUCTION) --seed $$seed --out $$run --quiet --overwrite || exit 1; \
	  $(VENV)/bin/headcoop trace $$run --out $$run/trace --prompts 32 || exit 1; \
	done
	@test -e $(RUNS)/trace/count01/final || $(VENV)/bin/headcoop train --out $(RUNS)/trace/count01 --quiet --overwrite
	$(VENV)/bin/headcoop trace $(RUNS)/trace/count01 --out $(RUNS)/trace/count01/trace

# Successor heads: five one-layer models (seeds 0-4) and a two-layer one on the successor task,
# trained once (reruns only analyse) and analysed into $(RUNS)/successor/*/analysis.
SUCCESSOR := --task successor --no-layernorm --d-model 64 --n-heads 4 --d-head 16 --epochs 20 \
	--lr 3e-3 --dropout 0
successor: $(STAMP)
	@for run in seed_0 seed_1 seed_2 seed_3 seed_4 two_layer; do \
	  dir=$(RUNS)/successor/$$run; \
	  case $$run in seed_*) flags="--seed $${run#seed_}";; *) flags="--n-layers 2";; esac; \
	  test -e $$dir/final || $(VENV)/bin/headcoop train $(SUCCESSOR) $$flags --out $$dir --quiet --overwrite || exit 1; \
	  $(VENV)/bin/headcoop successor $$dir --out $$dir/analysis || exit 1; \
	done

# Interactions of heads across tasks: every task's usual shape x 3 seeds, trained once (reruns
# only read), analysed, into $(RUNS)/cooperation/cooperation.csv and cooperation.html.
cooperation: $(STAMP)
	$(VENV)/bin/headcoop cooperation --out $(RUNS)/cooperation$(if $(QUICK),-quick --quick)

# QUICK=1: every bench on small inputs (each still prints its ratio against its baseline),
# so that .ci/run catches a bench that no longer runs.
bench: bench-train bench-subsets bench-sweep bench-fused bench-analyze bench-explorer bench-search

bench-train: $(STAMP)
	$(PY) scripts/bench_train.py $(if $(QUICK),--examples 200 --bag-epochs 2 --skip-full-run)

bench-sweep: $(STAMP)
	$(PY) scripts/bench_sweep.py $(if $(QUICK),--quick)

bench-fused: $(STAMP)
	$(PY) scripts/bench_fused.py $(if $(QUICK),--steps 5 --rounds 1)

bench-subsets: train
	$(PY) scripts/bench_subsets.py $(RUNS)/paper $(if $(QUICK),--quick)

bench-analyze: train
	$(PY) scripts/bench_analyze.py $(RUNS)/paper $(if $(QUICK),--quick)

bench-search: $(STAMP)
	$(PY) scripts/bench_search.py $(if $(QUICK),--quick --trials 2)

bench-explorer: train chromium
	$(PY) scripts/bench_explorer.py $(RUNS)/paper --out $(RUNS)/paper/explore

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts examples
	$(VENV)/bin/ruff format --check src tests scripts examples

clean:
	rm -rf $(VENV) $(VENV_TL3) build src/*.egg-info .pytest_cache .ruff_cache
