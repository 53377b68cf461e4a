# mrisr — the two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mrisr-installed

.PHONY: setup demo test test-slow test-full lint format clean-runs

# The environment is rebuilt only when pyproject.toml changes (the stamp holds its hash).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[dev,metrics,weights]"
	@sha256sum pyproject.toml > $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) train.py

# Tests run in parallel, one worker per core (pytest-xdist), whole modules per worker so that module-scoped fixtures
# are built once; a single file runs serially with `$(PY) -m pytest tests/<file>.py`.
XDIST := -n auto --dist loadfile

test: setup
	$(PY) -m pytest -q $(XDIST)

test-slow: setup
	$(PY) -m pytest -q $(XDIST) -m "slow and not gpu"

test-full: setup
	$(PY) -m pytest -q $(XDIST) -m "not gpu"

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean-runs:
	rm -rf runs/
