#!/usr/bin/env bash
# Make sure promtool (Debian's prometheus package) is installed, for the alert rules' tests
# (tests/unit/test_alerts.py): through apt-get when we are root, otherwise say exactly what to
# install. Quiet when it is. The package's own service is not started here.
set -euo pipefail
have() { command -v promtool >/dev/null 2>&1; }
have && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing prometheus (promtool) with apt-get..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  have && exit 0
fi
echo "promtool is missing. Install it, e.g.: sudo apt-get install prometheus (Debian/Ubuntu) or brew install prometheus (macOS)" >&2
exit 1
