#!/bin/bash
# Side by side: the HTTP servers authz's HTTP mode could run on, each answering 200 with
# nothing else. One process each, wrk -t2 -c32 -d5s direct; CPU per request from /proc (the
# server's processes only). Not part of `make bench`: the candidates are not tollway's
# dependencies. Run it with them in a scratch venv:
#   python3 -m venv /tmp/cand && /tmp/cand/bin/pip install uvicorn uvloop httptools granian
#   CAND=/tmp/cand bench/http_candidates.sh
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CAND="${CAND:-/tmp/cand}"
cd "$(dirname "$0")/candidates"
measure() {
  name=$1; shift
  "$@" >/dev/null 2>&1 &
  pid=$!
  sleep 2.5
  wrk -t2 -c32 -d2s http://127.0.0.1:9499/check >/dev/null
  pids="$pid $(cat /proc/$pid/task/$pid/children 2>/dev/null)"
  t0=0; for p in $pids; do t0=$((t0 + $(awk '{print $14+$15}' /proc/$p/stat))); done
  out=$(wrk -t2 -c32 -d5s http://127.0.0.1:9499/check)
  t1=0; for p in $pids; do t1=$((t1 + $(awk '{print $14+$15}' /proc/$p/stat))); done
  n=$(echo "$out" | grep -o "[0-9]* requests in" | awk '{print $1}')
  rps=$(echo "$out" | grep "Requests/sec" | awk '{print $2}')
  python3 -c "print(f'{\"$name\":40} {float($rps):>10,.0f} req/s  CPU {($t1-$t0)*10000/$n:5.1f} µs/request')"
  kill $pid; wait $pid 2>/dev/null; sleep 0.5
}
measure "tollway HTTP front (httptools, uvloop)" "$ROOT/.venv/bin/python" "$ROOT/bench/http_ceiling.py" --port 9499
measure "uvicorn 0.54 (httptools, uvloop), ASGI" "$CAND"/bin/uvicorn asgi_app:app --port 9499 --loop uvloop --http httptools --no-access-log --log-level warning
measure "granian 2.8 (Rust), ASGI, 1 worker" "$CAND"/bin/granian --interface asgi --port 9499 --workers 1 --no-ws asgi_app:app
measure "granian 2.8 (Rust), RSGI, 1 worker" "$CAND"/bin/granian --interface rsgi --port 9499 --workers 1 --no-ws rsgi_app:app
