#!/usr/bin/env bash
# promtool and prometheus (Debian's prometheus package): the alert rules' tests
# (tests/unit/test_alerts.py) and a real Prometheus scraping the stack (tests/e2e/test_prometheus.py).
exec "$(dirname "$0")/ensure-apt.sh" "the alert rules' tests and the Prometheus e2e test" promtool prometheus prometheus prometheus
