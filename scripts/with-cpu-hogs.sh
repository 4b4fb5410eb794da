#!/usr/bin/env bash
# Run a command while one busy process per core competes for the CPU at normal priority, as
# on a laptop doing other work. The hogs are bounded (--timeout) and stopped when the command
# ends, however it ends. Exit status: the command's.
set -uo pipefail
cores=$(nproc)
stress-ng --cpu "$cores" --cpu-method int64 --timeout 3h --quiet &
hogs=$!
trap 'kill "$hogs" 2>/dev/null; wait "$hogs" 2>/dev/null' EXIT INT TERM
echo "with-cpu-hogs: $cores busy process(es) (stress-ng pid $hogs) while: $*" >&2
"$@"
