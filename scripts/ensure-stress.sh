#!/usr/bin/env bash
# make test-stress's CPU hogs.
exec "$(dirname "$0")/ensure-apt.sh" "make test-stress" stress-ng stress-ng
