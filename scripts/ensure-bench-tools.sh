#!/usr/bin/env bash
# make bench needs h2load (Debian: nghttp2-client) and wrk: install them through apt-get when
# we are root, otherwise say exactly what to install. Quiet when both are there.
set -euo pipefail
missing=()
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with apt-get..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
echo "make bench needs: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
exit 1
