#!/usr/bin/env bash
# make test-stress needs stress-ng (Debian: stress-ng) for its CPU hogs: install it through
# apt-get when we are root, otherwise say exactly what to install. Quiet when it is there.
set -euo pipefail
command -v stress-ng >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing stress-ng with apt-get..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng >/dev/null
  command -v stress-ng >/dev/null 2>&1 && exit 0
fi
echo "make test-stress needs stress-ng (e.g. sudo apt-get install stress-ng)" >&2
exit 1
