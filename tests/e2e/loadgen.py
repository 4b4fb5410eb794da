"""A bounded load generator that runs as a process of its own (``python -m tests.e2e.loadgen``).

Each key gets one thread with a keep-alive connection to Envoy, sending GET requests until
``--seconds`` have passed or ``--max-requests`` were sent, at most ``--rate`` per second. On
exit it writes JSON: per key label, the count of each status and the latency of each request
in ms (a dropped connection counts as status 0 and is reopened).
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from pathlib import Path


def drive(port: int, key: str, until: float, max_requests: int, rate: float, out: dict) -> None:
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    interval = 1.0 / rate
    next_at = time.monotonic()
    for _ in range(max_requests):
        now = time.monotonic()
        if now >= until:
            break
        if next_at > now:
            time.sleep(next_at - now)
        next_at += interval
        start = time.perf_counter()
        try:
            conn.request("GET", "/v1/things", headers={"x-api-key": key})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            status = 0
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        latencies.append((time.perf_counter() - start) * 1000)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    conn.close()
    out["statuses"], out["latencies_ms"] = statuses, latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--keys", type=Path, required=True, help='JSON {"label": "key", ...}')
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second per key")
    ap.add_argument("--max-requests", type=int, default=5000, help="per key")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    keys = json.loads(args.keys.read_text())
    until = time.monotonic() + args.seconds
    results: dict[str, dict] = {label: {} for label in keys}
    threads = [threading.Thread(target=drive, args=(args.port, key, until, args.max_requests,
                                                    args.rate, results[label]))
               for label, key in keys.items()]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    args.out.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
