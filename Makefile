# Two commands: `make run` (web + worker on the embedded default, with the demo) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export FLASK_APP := relapp

.PHONY: run test setup lint clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml package.json package-lock.json | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/python -m relapp.run

# Four xdist workers on two cores: the tests wait on git, Redis, the database and subprocesses
# far more than they compute. Each worker has its own databases and Redis (tests/conftest.py).
TEST_WORKERS ?= 4

test: setup
	$(BIN)/python tests/setup_browser.py
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: setup
	$(BIN)/python -m pip install --quiet ruff mypy
	$(BIN)/ruff check relapp tests worker.py config.py bench
	$(BIN)/mypy

# Benchmarks print figures and ratios; none is part of `make test`. pages.py and load.py need
# this machine's PostgreSQL and Redis on loopback (bench/README.md).
bench: setup
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/pages.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/load.py --make-run

clean:
	rm -rf $(VENV) node_modules instance
