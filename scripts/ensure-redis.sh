#!/usr/bin/env bash
# redis-server for the stack and the tests, redis-cli to build the test Redis Cluster.
exec "$(dirname "$0")/ensure-apt.sh" "tollway's stack and tests" redis-server redis-server redis-cli redis-tools
