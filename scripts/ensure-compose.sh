#!/usr/bin/env bash
# Make sure a Compose CLI is there for the test that runs `docker compose config` on
# docker-compose.yml: the docker compose plugin, or else docker-compose from apt-get when we
# are root. Quiet when one is already installed; never fatal (the test then says it skipped).
set -uo pipefail
docker compose version >/dev/null 2>&1 && exit 0
command -v docker-compose >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing docker-compose with apt-get..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) >/dev/null 2>&1
fi
command -v docker-compose >/dev/null 2>&1 || echo "no docker compose CLI: tests/e2e/test_compose.py will skip its config check" >&2
exit 0
