"""Bench: drain one closed window for N active customers into the Stripe stand-in.

Starts its own redis-server (under the dev kit's Stack) and stand-in, writes N customers with one key and one window of
usage each, runs one drain pass in v1 and in stream mode, and prints the time and the number
of Stripe API calls each took.

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

from aiohttp import web
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit.stack import Ports, Stack, free_port
from devkit.standin.app import Standin
from devkit.standin.objects import World
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


async def run_mode(mode: str, n: int, redis_url: str) -> tuple[float, int, int]:
    port = free_port()
    standin = Standin(World(f"http://127.0.0.1:{port}"))
    runner = web.AppRunner(standin.build(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    redis = connect(redis_url, timeout_s=30)
    await redis.flushdb()
    now = int(time.time())
    await seed(redis, n, now - now % W - 2 * W)
    client = Stripe(
        StripeSettings(stripe_api_base=f"http://127.0.0.1:{port}"), max_network_retries=0
    )
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
    accepted = sum(int(e["payload"]["value"]) for e in standin.world.meter_events)
    assert accepted == 7 * n, (accepted, result)
    calls = sum(standin.calls.values())
    await client.aclose()
    await redis.aclose()
    await runner.cleanup()
    return took, calls, len(standin.world.meter_events)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "drain.md")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as data:
        stack = Stack(Ports.free(), Path(data) / "tiers.toml", Path(data), lambda _n, _l: None)
        try:
            stack.start("redis")
            rows = []
            for mode in ("v1", "stream"):
                took, calls, events = asyncio.run(
                    run_mode(mode, args.customers, stack.effective_redis_url)
                )
                rows.append(
                    f"| {mode} | {args.customers:,} | {events:,} | {calls:,} | {took:.1f} s |"
                )
                print(rows[-1], flush=True)
        finally:
            stack.stop_all()
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
