#!/usr/bin/env bash
# The portal's browser test drives Debian's headless Chromium (package chromium) through
# Playwright on that executable (never a browser Playwright downloads): install it through
# apt-get when we are root, otherwise say exactly what to install. Quiet when it is there.
set -euo pipefail
have() { command -v chromium >/dev/null 2>&1; }
have && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium with apt-get..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  have && exit 0
fi
echo "the browser test needs Chromium (e.g. sudo apt-get install chromium); it is skipped without it" >&2
exit 1
