# mer-robustness: two commands do all the set-up (see README.md)
#   make book   execute every chapter (quick profile, synthetic data) and build the site
#   make test   run the test suite (creates the environment on first use)

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= quick
DEVICE  ?= auto

.PHONY: book site test chromium benchmarks clean

$(STAMP): pyproject.toml .ci/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c .ci/constraints.txt -e '.[test]'
	@touch $(STAMP)

## Execute every chapter with papermill (profile $(PROFILE)) and build the static site.
book: $(STAMP)
	$(PY) -m mer_lib.bookbuild --profile $(PROFILE) --device $(DEVICE)

## Rebuild the site from the already executed chapters (after re-running one with papermill).
site: $(STAMP)
	$(PY) -m mer_lib.bookbuild --site-only

## Debian's Chromium for the browser test (needs root or sudo; skipped when present).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) chromium
	$(PY) -m pytest

benchmarks: $(STAMP)
	$(PY) benchmarks/bench_frontend.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_attack.py

clean:
	rm -rf _build
