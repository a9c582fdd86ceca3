# Two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Every third-party package, pinned with the sha256 of each file pip may pick: `make install`
# and CI install from LOCK (runtime + test), the CPU image from RUNTIME_LOCK, the GPU image from
# GPU_LOCK. `make lock` rewrites all three.
LOCK := requirements.lock
RUNTIME_LOCK := requirements-runtime.lock
GPU_LOCK := requirements-gpu.lock
LOCK_TOOL := .venv-lock
PIP_TOOLS := pip-tools==7.6.2
COMPILE := $(LOCK_TOOL)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
# The GPU lock is resolved for the GPU image's platform, not this machine's (pip-tools cannot):
# uv, in its own venv. NVIDIA's TensorRT image (deploy/docker/Dockerfile.gpu): Python 3.12, x86_64.
UV_TOOL := .venv-uv
UV := uv==0.13.9
GPU_PYTHON := 3.12
GPU_PLATFORM := x86_64-manylinux_2_28
# TensorRT comes from that base image, not from the lock: on PyPI, tensorrt-cu12 and
# tensorrt-cu12-libs are source stubs that download the real wheel from NVIDIA's index while
# they build, which no hash of ours covers (and the bindings alone cannot load without the libs).
GPU_FROM_BASE_IMAGE := tensorrt-cu12 tensorrt-cu12-libs tensorrt-cu12-bindings

.PHONY: install test test-fast typecheck demo bench chaos stack clean system-deps lock lock-gpu

# Debian's redis-server backs the embedded stack; installed here if it is missing.
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (Debian package)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server; fi; }

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Hash-checked: a file whose sha256 is not in the lock is refused. torch==2.13.0 is the CPU
	# wheel here; GPU hosts pre-install their CUDA build of 2.13.0, which then counts as installed.
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	# the project itself, no dependency resolution and no unpinned build tools (setuptools is locked)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Re-pin everything to the newest releases pyproject.toml allows, with hashes (pip-tools in its
# own venv). torch's local "+cpu" label is dropped from the pin so a CUDA build of the same
# version also satisfies it; the hash kept is the CPU wheel's.
lock:
	@test -x $(LOCK_TOOL)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOL) && $(LOCK_TOOL)/bin/pip install -q $(PIP_TOOLS); }
	$(COMPILE) --extra test -o $(LOCK) pyproject.toml
	$(COMPILE) -o $(RUNTIME_LOCK) pyproject.toml
	sed -i -E 's/^torch==([0-9.]+)\+cpu /torch==\1 /' $(LOCK) $(RUNTIME_LOCK)
	$(MAKE) lock-gpu

# The GPU image's lock: the gpu extra at the runtime lock's versions, for GPU_PYTHON on
# GPU_PLATFORM, resolved without installing anything. torch==2.13.0 here is PyPI's Linux build
# (CUDA 13.0, its nvidia-* wheels pinned too), hash-checked like every other package.
lock-gpu:
	@test -x $(UV_TOOL)/bin/uv || { $(PYTHON) -m venv $(UV_TOOL) && $(UV_TOOL)/bin/pip install -q $(UV); }
	$(UV_TOOL)/bin/uv pip compile --quiet pyproject.toml --extra gpu --constraint $(RUNTIME_LOCK) \
	  --python-version $(GPU_PYTHON) --python-platform $(GPU_PLATFORM) --generate-hashes --no-emit-index-url \
	  $(addprefix --no-emit-package ,$(GPU_FROM_BASE_IMAGE)) --custom-compile-command "make lock-gpu" -o $(GPU_LOCK)

install: system-deps $(STAMP)

# Lint first (ruff, configured in pyproject.toml: seconds), then the type checker (mypy on
# schemas/, engines/ and stream/, [tool.mypy] in pyproject.toml), then every test (the import
# contract, research and training fenced off, is tests/test_layers.py).
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q tests

# Unit tests only: no broker, no Redis (integration tests are marked and left out).
test-fast: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -m "not integration" tests

# The same checks before each commit: `pre-commit install` once (.pre-commit-config.yaml).
typecheck: install
	$(VENV)/bin/mypy

demo: install
	$(VENV)/bin/survey-classifier demo

# The night through the real service beside the machine's limits (benchmarks/README.md). The
# chaos suite is its own target: one fault at a time under several members (~12 min on 2 cores).
bench: install
	$(PY) -m benchmarks.night

# kill -9 of a member, Redis and the broker frozen 20 s, a decode worker killed, a member starved
# of CPU, a member's link to Redis cut: benchmarks/results/<machine>/chaos/chaos.{json,md}
chaos: install
	$(PY) -m benchmarks.chaos

stack: install
	$(VENV)/bin/survey-classifier stack up

clean:
	rm -rf $(VENV) $(LOCK_TOOL) $(UV_TOOL) build *.egg-info .pytest_cache
