#!/usr/bin/env bash
# Make sure commands from Debian packages are installed: through apt-get when we are root,
# otherwise say exactly what to install. Quiet when every command is there.
#   scripts/ensure-apt.sh "what needs them" COMMAND PACKAGE [COMMAND PACKAGE ...] [-- EXTRA_PACKAGE ...]
# EXTRA_PACKAGEs are installed beside the missing ones (fonts for a browser, say).
set -euo pipefail
why=$1
shift
missing=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  command -v "$1" >/dev/null 2>&1 || missing+=("$2")
  shift 2
done
[ $# -gt 0 ] && shift
[ ${#missing[@]} -eq 0 ] && exit 0
packages=("${missing[@]}" "$@")
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${packages[*]} with apt-get..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  exit 0
fi
echo "$why needs: ${packages[*]} (e.g. sudo apt-get install ${packages[*]})" >&2
exit 1
