#!/usr/bin/env bash
# Make sure redis-server is installed: through apt-get when we are root, otherwise say exactly
# what to install. Quiet when it is already there.
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing redis-server with apt-get..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  command -v redis-server >/dev/null 2>&1 && exit 0
fi
echo "redis-server is missing. Install it, e.g.: sudo apt-get install redis-server (Debian/Ubuntu) or brew install redis (macOS)" >&2
exit 1
