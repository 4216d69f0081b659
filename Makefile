# mer-robustness: two commands do all the set-up (see README.md)
#   make book   execute every chapter (quick profile, synthetic data) and build the site
#   make test   run the test suite (creates the environment on first use)
# Variables: PROFILE=smoke|quick|paper  DEVICE=auto|cpu|cuda  DATA=synthetic|/path/to/datasets
#            ENGINE=inprocess|ray (make run)  ADDRESS=auto (make run ENGINE=ray on a Ray cluster)
#            TEST_WORKERS=2 (make test: processes running the tests; 0 = one, no xdist)

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= quick
DEVICE  ?= auto
DATA    ?= synthetic
ENGINE  ?= inprocess
ADDRESS ?=
TEST_WORKERS ?= 2
EXPERIMENT = --profile $(PROFILE) --device $(DEVICE) --data $(DATA)

.PHONY: book site plan run test chromium benchmarks bench-gpu clean

# reinstalls whenever pyproject.toml or the constraints change
$(STAMP): pyproject.toml .ci/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c .ci/constraints.txt -e '.[test]'
	@touch $(STAMP)

## Execute every chapter with papermill and build the static site (progress is printed per
## chapter and per job; everything already in the run store is loaded, not recomputed).
book: $(STAMP)
	$(PY) -m mer_lib.bookbuild $(EXPERIMENT)

## Rebuild the site from the already executed chapters (after re-running one with papermill).
site: $(STAMP)
	$(PY) -m mer_lib.bookbuild --site-only

## The experiment's missing jobs (models, extension models, attacks), as a table (trains nothing).
plan: $(STAMP)
	$(PY) -m mer_lib plan $(EXPERIMENT)

## Run the missing jobs (ENGINE=ray: one Ray task per job, e.g. one per GPU); `make book` then loads them.
run: $(STAMP)
	$(PY) -m mer_lib run $(EXPERIMENT) --engine $(ENGINE) $(if $(ADDRESS),--address $(ADDRESS))

## Debian's Chromium for the browser test (needs root or sudo; skipped when present). Without
## apt-get nothing is installed and the browser test is skipped with a note.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "note: no apt-get here, so Chromium is not installed: the browser test will be skipped" \
	       "(install Chromium yourself and run 'make test' again to include it)"; \
	else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

## The tests in TEST_WORKERS processes (pytest-xdist; one test file stays in one process, so a
## file's module-scoped fixtures are built once). TEST_WORKERS=0 runs them in this process.
test: $(STAMP) chromium
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

benchmarks: $(STAMP)
	$(PY) benchmarks/bench_frontend.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_attack.py
	$(PY) benchmarks/bench_runner.py
	$(PY) benchmarks/bench_waveform.py

## On a CUDA machine: the GPU figures of the model-stack issue (stacked training and attack
## throughput, today's train loop, and the paper profile's projected wall time); JSON in benchmarks/results/.
bench-gpu: $(STAMP)
	$(PY) benchmarks/bench_training.py --device cuda
	$(PY) benchmarks/bench_stack.py --device cuda --bf16 --channels-last
	$(PY) benchmarks/bench_paper.py --device cuda
	$(PY) benchmarks/bench_waveform.py --device cuda

clean:
	rm -rf _build
