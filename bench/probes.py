"""What `make bench` reads around a load run: CPU seconds from /proc, Redis's command
counters, and authz's own Prometheus samples."""

from __future__ import annotations

import asyncio
import os
import re
import urllib.request
from pathlib import Path

from tollway.redis_client import connect

# Commands a script runs inside Redis: they count as commands but cost no round trip.
_INSIDE_SCRIPTS = {
    "hmget",
    "hget",
    "hset",
    "hincrby",
    "expire",
    "time",
    "exists",
    "get",
    "set",
    "hdel",
    "hgetall",
    "incr",
    "pexpire",
    "zcard",
    "zadd",
    "zremrangebyscore",
}


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def rss_bytes(pid: int) -> int:
    """The process's resident memory now (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for process {pid}")


def with_children(pid: int) -> list[int]:
    """The process and its direct children (authz's workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def redis_calls(url: str) -> tuple[int, int]:
    """(round trips, all commands) so far: EVAL/EVALSHA are round trips; the commands a script
    runs inside Redis count as commands but cost no trip."""

    async def go() -> tuple[int, int]:
        r = connect(url)
        stats = await r.info("commandstats")
        await r.aclose()
        calls = {
            k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k != "cmdstat_info"
        }
        trips = sum(n for name, n in calls.items() if name not in _INSIDE_SCRIPTS)
        return trips, sum(calls.values())

    return asyncio.run(go())


def scrape(metrics_port: int, workers: int, sample: str) -> list[int]:
    """One Prometheus sample (name with labels) from each worker's /metrics."""
    out = []
    for i in range(workers):
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port + i}/metrics", timeout=5) as r:
            m = re.search(rf"^{re.escape(sample)} ([\d.e+]+)$", r.read().decode(), re.M)
        out.append(int(float(m.group(1))) if m else 0)
    return out


def worker_ok(metrics_port: int, workers: int) -> list[int]:
    return scrape(metrics_port, workers, 'tollway_authz_decisions_total{reason="ok"}')


def pipelines(metrics_port: int, workers: int) -> int:
    return sum(scrape(metrics_port, workers, "tollway_authz_store_pipelines_total"))
