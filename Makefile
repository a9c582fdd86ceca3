# Two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast demo bench stack clean system-deps

# Debian's redis-server backs the embedded stack; installed here if it is missing.
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (Debian package)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server; fi; }

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned in pyproject (CPU wheel here); GPU hosts pre-install their CUDA build.
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

install: system-deps $(STAMP)

test: install
	$(PY) -m pytest -q tests

# Unit tests only: no broker, no Redis (integration tests are marked and left out).
test-fast: install
	$(PY) -m pytest -q -m "not integration" tests

demo: install
	$(VENV)/bin/survey-classifier demo

bench: install
	$(PY) -m benchmarks.night

stack: install
	$(VENV)/bin/survey-classifier stack up

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
