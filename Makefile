# panbinder: the two commands are `make serve` and `make test`.
# serve installs the runtime lock only; test, lint and format add the development lock (ruff, pytest).
SHELL := /bin/bash
export PANBINDER_STATE ?= $(CURDIR)/.state
VENV := $(PANBINDER_STATE)/venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=


.PHONY: setup setup-test serve test test-unit test-docker lint format chart-check stop lock bench clean

setup:
	@bash scripts/setup.sh

serve: setup
	@$(VENV)/bin/panbinder serve

setup-test:
	@bash scripts/setup.sh --test

test: setup-test
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	@$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup-test
	@$(PY) -m pytest -m "not docker" $(PYTEST_ARGS)

test-docker: setup-test
	@$(PY) -m pytest -m docker $(PYTEST_ARGS)

lint: setup-test
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup-test
	@$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

# Render the Helm chart with each values file in helm/panbinder/ci (no helm binary), lint it and
# validate every object against the Kubernetes 1.30-1.37 schemas.
chart-check: setup-test
	@$(PY) helm/chart_check.py

bench: setup
	@$(PY) -m benchmarks.launch
	@$(PY) -m benchmarks.data_launch
	@$(PY) -m benchmarks.preview
	@$(PY) -m benchmarks.build
	@$(PY) -m benchmarks.faults
	@$(PY) -m benchmarks.check

stop:
	@bash scripts/stop.sh

# Re-resolve the pinned dependency set (needs network to the package index).
lock:
	@bash scripts/lock.sh
