# arsync — run `make help` for the list of targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install demo test test-unit lint format bench clean

help: ## List every target with its purpose
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@echo "Installing arsync and its pinned dependencies into $(VENV) (once; a minute or two)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@echo "Installed."
	@touch $@

install: $(STAMP) ## Create .venv and install arsync with its pinned dependencies

demo: $(STAMP) ## Run the offline demo (mock ERP, demo tenant, first sync) and keep serving
	$(BIN)/arsync demo $(ARGS)

test: $(STAMP) ## Run the test suite (SQLite and PostgreSQL)
	$(BIN)/pytest $(ARGS)

test-unit: $(STAMP) ## Run the unit tests alone (no database server, a few seconds)
	$(BIN)/pytest tests/unit $(ARGS)

lint: $(STAMP) ## ruff (lint + format check) and mypy over src, tests and bench
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(STAMP) ## Apply ruff's formatting and autofixes
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP) ## Run the benchmarks; figures go to bench/results.json
	@# Start-up is measured as an installed arsync starts: with its bytecode compiled, which an
	@# editable install under PYTHONDONTWRITEBYTECODE never writes.
	$(BIN)/python -m compileall -q src bench > /dev/null
	$(BIN)/python -m bench.run $(ARGS)

clean: ## Remove the virtualenv, local data and caches
	rm -rf $(VENV) .arsync .pytest_cache .mypy_cache .ruff_cache bench/.work
