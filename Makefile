# tollway: `make run` starts the local stack, `make test` runs the tests. Both set up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test unit integration e2e check fmt bench clean

# Idempotent and quick when nothing changed: pip runs only when pyproject.toml is newer.
setup: $(STAMP)
	@scripts/ensure-redis.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: setup
	$(BIN)/tollway dev

test: setup
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest tests/unit

integration: setup
	$(BIN)/pytest tests/integration

e2e: setup
	$(BIN)/pytest tests/e2e

# Everything measured side by side in one run; see README "Performance". About 3 minutes.
bench: setup
	@scripts/ensure-bench-tools.sh
	$(BIN)/python bench/run.py

check: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .tollway .pytest_cache .mypy_cache .ruff_cache *.egg-info
