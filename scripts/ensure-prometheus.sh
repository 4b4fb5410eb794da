#!/usr/bin/env bash
# promtool (Debian's prometheus package), for the alert rules' tests (tests/unit/test_alerts.py).
exec "$(dirname "$0")/ensure-apt.sh" "the alert rules' tests" promtool prometheus
