#!/usr/bin/env bash
# Make sure redis-server and redis-cli (which builds the test Redis Cluster) are installed:
# through apt-get when we are root, otherwise say exactly what to install. Quiet when they are.
set -euo pipefail
have() { command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; }
have && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing redis-server with apt-get..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
  have && exit 0
fi
echo "redis-server or redis-cli is missing. Install them, e.g.: sudo apt-get install redis-server redis-tools (Debian/Ubuntu) or brew install redis (macOS)" >&2
exit 1
