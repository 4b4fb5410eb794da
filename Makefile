# tollway: `make run` starts the local stack, `make test` runs the tests. Both set up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-cluster test-stress unit integration e2e check fmt bench bench-ab clean

# Idempotent and quick when nothing changed: pip runs only when pyproject.toml is newer.
setup: $(STAMP)
	@scripts/ensure-redis.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: setup
	$(BIN)/tollway dev

# The e2e tests that exercise authz through Envoy, run again with authz and Envoy in HTTP
# ext_authz mode (envoy/envoy-http.yaml).
AUTHZ_E2E := tests/e2e/test_edge.py tests/e2e/test_faults.py tests/e2e/test_load_faults.py \
	tests/e2e/test_leases.py tests/e2e/test_observability.py tests/e2e/test_served.py \
	tests/e2e/test_api.py tests/e2e/test_tls.py tests/e2e/test_limits.py \
	tests/e2e/test_prepaid.py tests/e2e/test_prepaid_browser.py

# Every tier on one redis-server, then the integration and e2e tiers again on a local
# 3-master Redis Cluster (tests marked single_redis are skipped there); then the authz e2e
# tests in HTTP mode, on both.
test: setup
	@scripts/ensure-compose.sh
	@scripts/ensure-prometheus.sh
	@scripts/ensure-chromium.sh
	$(BIN)/pytest
	$(BIN)/pytest --redis-mode cluster tests/integration tests/e2e
	$(BIN)/pytest --authz-mode http $(AUTHZ_E2E)
	$(BIN)/pytest --authz-mode http --redis-mode cluster $(AUTHZ_E2E)

test-cluster: setup
	@scripts/ensure-prometheus.sh
	$(BIN)/pytest --redis-mode cluster tests/integration tests/e2e

# The integration and e2e tiers in both Redis modes, then the authz e2e tests in HTTP mode in
# both, while one busy process per core competes for the CPU (scripts/with-cpu-hogs.sh): the
# suite must hold on a busy laptop too. Every run always happens; the target fails if any did.
test-stress: setup
	@scripts/ensure-stress.sh
	@scripts/ensure-prometheus.sh
	@scripts/ensure-chromium.sh
	scripts/with-cpu-hogs.sh sh -c '$(BIN)/pytest tests/integration tests/e2e; a=$$?; \
	  $(BIN)/pytest --redis-mode cluster tests/integration tests/e2e; b=$$?; \
	  $(BIN)/pytest --authz-mode http $(AUTHZ_E2E); c=$$?; \
	  $(BIN)/pytest --authz-mode http --redis-mode cluster $(AUTHZ_E2E); d=$$?; \
	  echo "test-stress: single $$a, cluster $$b, http single $$c, http cluster $$d"; \
	  [ $$a -eq 0 ] && [ $$b -eq 0 ] && [ $$c -eq 0 ] && [ $$d -eq 0 ]'

unit: setup
	@scripts/ensure-prometheus.sh
	$(BIN)/pytest tests/unit

integration: setup
	$(BIN)/pytest tests/integration

e2e: setup
	@scripts/ensure-chromium.sh
	@scripts/ensure-prometheus.sh
	$(BIN)/pytest tests/e2e

# Everything measured side by side in one run, gRPC and HTTP mode; see README "Performance".
# About 7 minutes.
bench: setup
	@scripts/ensure-bench-tools.sh
	$(BIN)/python bench/run.py

# authz of another revision against this checkout's, interleaved in one run (BASE=<git rev>).
bench-ab: setup
	@scripts/ensure-bench-tools.sh
	$(BIN)/python bench/ab.py --base $(BASE)

check: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .tollway .pytest_cache .mypy_cache .ruff_cache *.egg-info
