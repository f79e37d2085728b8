# Two commands for a newcomer: `make run` and `make test`. Everything lives in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: run test lint format bench clean deploy-tools

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tgfleet needs Python 3.11 or newer; found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed-run

## run: the demo: SQLite in ./data, the built-in sandbox with 20 accounts, API on :8000
run: $(VENV)/.installed-run
	$(BIN)/tgfleet run --demo

## test: the whole suite (PostgreSQL suites skip with a reason unless CI=true)
test: $(VENV)/.installed-dev
	$(BIN)/pytest

## lint: ruff, ruff format --check, mypy --strict, import-linter, the console's catalogues complete
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python tools/catalogue.py check

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: benchmarks under bench/, results into docs/benchmarks.md
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py

## deploy-tools: podman, checkov, kubernetes-validate, hadolint, podman-compose, actionlint for tests/deploy
deploy-tools:
	bash tools/deploy-tools.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
