# Polder — one target per job. `make` alone prints this help.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.polder-installed
DEVNET ?= .devnet
VALIDATORS ?= 4
BASE_PORT  ?= 8545

.DEFAULT_GOAL := help
.PHONY: help setup lint test test-fast run stop bench contracts format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv (if missing) and install Polder with its pinned dependencies

lint: setup ## ruff format check, ruff lint, mypy, layer arrows
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint ## the whole suite, as CI runs it (unit, integration on real node processes)
	$(BIN)/pytest

test-fast: setup ## unit tests only
	$(BIN)/pytest -m "not integration and not slow"

run: setup ## start a devnet on 127.0.0.1 in ./.devnet and print what to try next
	$(BIN)/polder devnet start --validators $(VALIDATORS) --dir $(DEVNET) --base-port $(BASE_PORT)

stop: setup ## stop the devnet in ./.devnet
	$(BIN)/polder devnet stop --dir $(DEVNET)

bench: setup ## run the benchmarks and print their figures
	$(BIN)/python scripts/bench_chain.py
	$(BIN)/python scripts/bench_devnet.py --txs 900 --rates 25,75,150
	$(BIN)/python scripts/bench_light.py
	$(BIN)/python scripts/bench_poll.py
	$(BIN)/python scripts/bench_budget.py --rates 10,25,50,100

contracts: setup ## recompile the Vyper sources into contracts/artifacts
	$(BIN)/python -m contracts.build

format: setup ## apply ruff formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove the virtualenv and devnet data
	rm -rf $(VENV) $(DEVNET) .pytest_cache .mypy_cache .ruff_cache
