"""Bench: drain one closed window for N active customers into the Stripe stand-in.

Starts its own redis-server and Stripe stand-in (each its own process, under the dev kit's
Stack: Stripe is remote, so the stand-in's work is not the daemon's), writes N customers with
one key and one window of usage each, runs one drain pass in v1 and in stream mode, and prints
the time and the number of Stripe API calls each took.

    python bench/drain.py [--customers 100000]

v1 mode is bounded by design by Stripe's live-mode limit (TOLLWAY_METERING_RATE, 1000 events
a second); stream mode sends 100 events a request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit.stack import Ports, Stack
from devkit.stack import Sink as LineSink
from metering.daemon import Drainer
from metering.ledger import Ledger
from metering.metrics import MeteringMetrics
from metering.retry import RateLimiter, Retrier
from metering.sinks import MeterEventSink, Sink
from metering.stream import StreamSink
from tollway import schema
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.records import KeyRecord
from tollway.redis_client import connect
from tollway.settings import StripeSettings
from tollway.stripe_api import Stripe
from tollway.tiers import parse_tiers

W = 60
TIERS = parse_tiers(
    '[tiers.pro]\nrequests_per_second = 10.0\nburst = 10\nmonthly_quota = 0\nover_quota = "bill"\n',
    "bench",
)


async def seed(redis: Any, n: int, window: int) -> None:
    now = int(time.time())
    for start in range(0, n, 2000):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 2000)):
                key_id, customer = f"{i:016x}", f"cus_bench_{i}"
                rec = KeyRecord.template("pro", customer, now)
                pipe.hset(schema.key_directory(key_id), "account", customer)
                pipe.hset(
                    schema.key_record(key_id, customer),
                    mapping={**rec.to_redis(), "key_id": key_id, "hash": "x"},
                )
                pipe.hset(
                    schema.account_state(customer),
                    mapping={
                        "customer": customer,
                        "tier": "pro",
                        "period_start": now,
                        "period_end": rec.period_end,
                    },
                )
                pipe.sadd(schema.owned_keys(customer), key_id)
                pipe.hset(schema.usage(customer), str(window), 7)
            await pipe.execute()


async def run_mode(mode: str, n: int, redis_url: str, stripe_base: str) -> tuple[float, int, int]:
    """One drain pass of ``n`` customers' closed window into the stand-in at ``stripe_base``
    (its own process, as Stripe is remote): (seconds, Stripe API calls, meter events). Every
    customer's usage must be billed once (asserted)."""
    redis = connect(redis_url, timeout_s=30, bound_each_reply=False)  # as metering's own
    await redis.flushdb()
    now = int(time.time())
    await seed(redis, n, now - now % W - 2 * W)
    client = Stripe(StripeSettings(stripe_api_base=stripe_base), max_network_retries=0)
    metrics = MeteringMetrics(CollectorRegistry())
    retrier = Retrier(RateLimiter(1000), 3)
    sink: Sink = MeterEventSink(client, retrier, W)
    if mode == "stream":
        sink = StreamSink(client, retrier, W, fallback=sink)
    keys = KeyStore(redis, KeyHasher())
    drainer = Drainer(keys, Ledger(redis, W, 0), sink, lambda: TIERS, metrics, 1e9)
    start = time.perf_counter()
    result = await drainer.drain()
    took = time.perf_counter() - start
    async with aiohttp.ClientSession(stripe_base) as http:
        async with http.get("/_standin/meter_events") as r:
            events = (await r.json())["data"]
        async with http.get("/_standin/calls") as r:
            calls = sum((await r.json())["data"].values())
    accepted = sum(int(e["payload"]["value"]) for e in events)
    assert accepted == 7 * n and len(events) == n, (accepted, len(events), result)
    await client.aclose()
    await redis.aclose()
    return took, calls, len(events)


def drain_fresh(mode: str, customers: int, state_dir: Path, sink: LineSink) -> tuple[float, int]:
    """(seconds, Stripe calls) for one drain pass, on a fresh redis-server and stand-in."""
    stack = Stack(Ports.free(), state_dir / "tiers.toml", state_dir, sink)
    try:
        stack.start("redis")
        stack.start("standin")
        took, calls, _ = asyncio.run(
            run_mode(mode, customers, stack.effective_redis_url, stack.standin_url)
        )
        return took, calls
    finally:
        stack.stop_all()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "drain.md")
    args = p.parse_args()
    rows = []
    for mode in ("v1", "stream"):
        with tempfile.TemporaryDirectory() as data:
            took, calls = drain_fresh(mode, args.customers, Path(data), lambda _n, _l: None)
        rows.append(
            f"| {mode} | {args.customers:,} | {args.customers:,} | {calls:,} | {took:.1f} s |"
        )
        print(rows[-1], flush=True)
    table = "\n".join(
        [
            f"Drain of one closed window, {args.customers:,} active customers, one key each "
            f"({os.cpu_count()} cores):",
            "",
            "| mode | customers | meter events | Stripe API calls | drain time |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
