# The two commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= deploy/recoverlink.yaml

.PHONY: run test lint format demo bench-ingest bench-worker bench-scale bench-reliability clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/recoverlink serve --config $(CONFIG) --migrate

test: $(VENV)/.installed-dev
	scripts/ensure-debian-packages prometheus prometheus-alertmanager chromium chromium-driver
	scripts/ensure-request-tracker
	$(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy src

format: $(VENV)/.installed-dev
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

bench-ingest: $(VENV)/.installed-dev
	scripts/ensure-debian-packages wrk
	$(BIN)/python bench/ingest.py

bench-worker: $(VENV)/.installed-dev
	$(BIN)/python bench/worker.py

bench-scale: $(VENV)/.installed-dev
	scripts/ensure-debian-packages prometheus-alertmanager
	$(BIN)/python bench/scale.py

# The reliability suite with outages longer than the issue's (RT down 4 minutes, PostgreSQL 2).
bench-reliability: $(VENV)/.installed-dev
	scripts/ensure-debian-packages prometheus prometheus-alertmanager
	scripts/ensure-request-tracker
	RECOVERLINK_RELIABILITY_LONG=1 $(BIN)/pytest -m reliability tests/reliability

# A scripted outage through Prometheus, Alertmanager, Request Tracker and recoverlink (scripts/demo).
demo: $(VENV)/.installed-run
	scripts/ensure-debian-packages prometheus prometheus-alertmanager
	scripts/ensure-request-tracker
	$(BIN)/python scripts/demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
