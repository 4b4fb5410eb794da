"""`make bench`: authz measured side by side with what it sits on, in one run, one table.

The processes run under the dev kit's ``Stack`` (devkit/stack.py), on free ports: a
redis-server; the empty-handler ceilings, gRPC (bench/ceiling.py) and HTTP
(bench/http_ceiling.py); authz in gRPC and then HTTP mode, with one and then two workers;
Envoy with listeners that answer directly (bench/listeners.py; no upstream is measured); and
the webhook service. Ratios within the run are what count: this machine is small and noisy.

One function per measurement, in the order of the table (gRPC first, then HTTP); what they
share is in bench/harness.py:

1. ``ceilings`` and ``http_ceiling``: the empty gRPC handler on asyncio and uvloop, and with
   the gRPC lean reference (one EVALSHA per check); authz's HTTP front with an empty handler; ``reference``: the lean
   reference (bench/reference.py), one EVALSHA per check and nothing of tollway's;
2. ``redis_clients``, ``many_tiers`` and ``authz_direct``: the Redis clients' CPU per
   EVALSHA; authz with 3 tiers against 500; authz alone per limiter mode and worker count
   (and with every limit on: caps, concurrency, a route's bucket; against the bucket alone;
   and a prepaid tier against a subscription tier),
   with its CPU and Redis's per check; the management API's verify beside an HTTP-mode check
   (bench/verify.py);
3. ``through_envoy`` (bench/envoy_rows.py): Envoy alone, Envoy + the empty handler, Envoy +
   the lean reference (HTTP) and Envoy + authz, at saturation and at about 1,000 rps;
4. ``webhook_rate``: signed Stripe events applied per second;
5. ``drain``: metering draining one window (bench/drain.py);
6. ``keyspace_rows`` (bench/keyspace.py): Redis memory per key and per account with 1,000,000
   keys, and authz's check rate over them against its rate over 1,000.

    python bench/run.py [--seconds 8] [--customers 100000] [--v1-customers 10000] [--keys 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.drain import drain_fresh
from bench.envoy_rows import through_envoy
from bench.harness import (
    HERE,
    TIERS,
    WEBHOOK_SECRET,
    Bench,
    LogFiles,
    Table,
    direct,
    new_stack,
    prepare,
    restart_authz,
)
from bench.keyspace import keyspace
from bench.load import h2load, wrk
from bench.probes import (
    cpu_seconds,
    pipelines,
    redis_calls,
    rss_bytes,
    with_children,
    worker_ok,
)
from bench.redis_clients import compare
from bench.verify import verify_beside_check


def ceilings(b: Bench) -> float:
    """1. The empty handler's checks/s on asyncio (the ceiling every ratio is against), on
    uvloop, and the gRPC lean reference (uvloop, one EVALSHA per check). Returns the asyncio
    ceiling."""
    results = {}
    for name, loop, reference in (
        ("asyncio", "asyncio", False),
        ("uvloop", "uvloop", False),
        ("reference", "uvloop", True),
    ):
        port = b.start_ceiling(loop, reference)
        h2load(port, b.bodies["exact"], 1, b.tmp / "warm.log")
        cpu0 = cpu_seconds([b.pid("ceiling")])
        c = h2load(port, b.bodies["exact"], b.seconds, b.tmp / "ceil.log")
        c["cpu_us"] = (cpu_seconds([b.pid("ceiling")]) - cpu0) / c["n"] * 1e6
        b.stack.stop("ceiling")
        results[name] = c
    ceil = results["asyncio"]["rps"]
    b.grpc_reference_rps = results["reference"]["rps"]
    for name, label in (
        ("asyncio", "1. gRPC ceiling (empty handler, asyncio loop), checks/s, h2load h2c"),
        ("uvloop", "   the same empty handler on uvloop (what authz runs on)"),
        (
            "reference",
            "   the gRPC lean reference: the uvloop empty handler + one EVALSHA per check "
            "(bench/reference.py's script and client)",
        ),
    ):
        c = results[name]
        b.table.row(
            label,
            f"{c['rps']:,.0f}  ({c['rps'] / ceil:.2f})  p50 {c['p50']:.2f} ms, "
            f"p99 {c['p99']:.2f} ms, CPU {c['cpu_us']:.0f} µs/check",
        )
    return ceil


def authz_direct(b: Bench, mode: str, workers: int, ceil: float) -> None:
    """2. authz alone, in ``mode``: checks/s against that mode's ceiling, then CPU, Redis
    round trips and Redis CPU per check, and how the checks spread over worker processes.
    One worker is measured in exact mode, lease mode and with a flood of one unknown key; two
    workers in exact mode. Leaves authz running."""
    reference = b.reference_rps if mode == "http" else b.grpc_reference_rps
    restart_authz(b, mode, workers)
    port, mport = b.stack.ports.authz, b.stack.ports.authz_metrics
    direct(b, mode, port, "exact", 2)  # connections, script cache, the key's tier
    pids = with_children(b.pid("authz")) if workers > 1 else [b.pid("authz")]
    modes = [("exact mode", "exact")]
    if workers == 1:
        modes += [
            ("lease mode", "lease"),
            ("one unknown key, flooded", "unknown"),
            ("exact mode, every limit on (day, hour, concurrency, route bucket)", "limits"),
            ("exact mode, a prepaid tier (a credit a check)", "prepaid"),
        ]
    rates: dict[str, float] = {}
    for limiter, body in modes:
        direct(b, mode, port, body, 1)

        def sample() -> tuple[list[int], float, tuple[int, int], int, float]:
            return (
                worker_ok(mport, workers),
                cpu_seconds(pids),
                redis_calls(b.redis_url),
                pipelines(mport, workers),
                cpu_seconds([b.pid("redis")]),
            )

        ok0, cpu0, calls0, pipes0, rcpu0 = sample()
        d = direct(b, mode, port, body, b.seconds)
        ok1, cpu1, calls1, pipes1, rcpu1 = sample()
        n = d["n"]
        spread = [a - z for a, z in zip(ok1, ok0, strict=True)]
        b.table.row(
            f"2. {mode}: authz direct, {limiter}, {workers} worker(s), checks/s (÷ {mode} ceiling)",
            f"{d['rps']:,.0f}  ({d['rps'] / ceil:.2f})  p50 {d['p50']:.2f} ms, p99 {d['p99']:.2f} ms"
            + f"; ÷ the lean reference {d['rps'] / reference:.2f}",
        )
        b.table.row(
            "   CPU per check / Redis round trips (scripts; commands) per check / Redis CPU per check / checks per worker",
            f"{(cpu1 - cpu0) / n * 1e6:.0f} µs / {(pipes1 - pipes0) / n:.3f} "
            f"({(calls1[0] - calls0[0]) / n:.3f}; {(calls1[1] - calls0[1]) / n:.2f}) / "
            f"{(rcpu1 - rcpu0) / n * 1e6:.1f} µs / {spread}",
        )
        rates[body] = d["rps"]
    if "limits" in rates:
        b.table.row(
            f"   {mode}: every limit on ÷ the bucket alone (issue 28's goal: ≥ 0.9)",
            f"{rates['limits'] / rates['exact']:.2f}",
        )
    if "prepaid" in rates:
        b.table.row(
            f"   {mode}: a prepaid tier ÷ a subscription tier (issue 27)",
            f"{rates['prepaid'] / rates['exact']:.2f}",
        )


def http_ceiling(b: Bench) -> float:
    """1. (HTTP) authz's HTTP front with a handler that answers 200 and nothing else, under the
    same wrk load as authz in HTTP mode. Returns its checks/s."""
    port = b.start_http_ceiling()
    direct(b, "http", port, "exact", 1)
    cpu0 = cpu_seconds([b.pid("ceiling")])
    c = direct(b, "http", port, "exact", b.seconds)
    cpu_us = (cpu_seconds([b.pid("ceiling")]) - cpu0) / c["n"] * 1e6
    b.stack.stop("ceiling")
    b.table.row(
        "1. HTTP ceiling (authz's HTTP front, empty handler), checks/s, wrk direct",
        f"{c['rps']:,.0f}  p50 {c['p50']:.2f} ms, p99 {c['p99']:.2f} ms, CPU {cpu_us:.1f} µs/check",
    )
    reference(b)
    return c["rps"]


def reference(b: Bench) -> None:
    """1. (HTTP) the lean reference (bench/reference.py), wrk direct: one EVALSHA per check
    and nothing of tollway's; its CPU per check and Redis's."""
    port = b.start_reference()
    direct(b, "http", port, "exact", 1)
    cpu0, rcpu0 = cpu_seconds([b.pid("reference")]), cpu_seconds([b.pid("redis")])
    r = direct(b, "http", port, "exact", b.seconds)
    cpu_us = (cpu_seconds([b.pid("reference")]) - cpu0) / r["n"] * 1e6
    rcpu_us = (cpu_seconds([b.pid("redis")]) - rcpu0) / r["n"] * 1e6
    b.stack.stop("reference")
    b.reference_rps = r["rps"]
    b.table.row(
        "1. the lean reference (bench/reference.py: one EVALSHA per check), checks/s, wrk direct",
        f"{r['rps']:,.0f}  p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, CPU {cpu_us:.1f} µs/check, "
        f"Redis CPU {rcpu_us:.1f} µs/check",
    )


def redis_clients(b: Bench) -> None:
    """2. (client) Client CPU per EVALSHA, redis-py against the lean client, batches of 32."""
    out = uvloop.run(compare(b.redis_url))
    b.table.row(
        "   client CPU per EVALSHA (pipelines of 32, uvloop): redis-py / lean client",
        f"{out['redis-py']:.1f} µs / {out['lean']:.1f} µs",
    )


def many_tiers(b: Bench, mode: str, extra: int = 497) -> None:
    """2. (tiers) authz in ``mode``, exact mode, 1 worker, with the tier table grown to 500
    tiers: checks/s against the same run with 3 tiers. check.lua takes only the key's tier,
    so the two should match. Leaves authz stopped; the table restored."""
    small = b.stack.tiers
    big = b.tmp / "tiers-500.toml"
    big.write_text(
        TIERS
        + "".join(
            f'[tiers.custom{i}]\nrequests_per_second = 10.0\nburst = 10\nmonthly_quota = 0\nover_quota = "bill"\n'
            for i in range(extra)
        )
    )
    rates: dict[str, list[float]] = {"3": [], "500": []}
    for name, table in (("3", small), ("500", big)) * 2:  # interleaved: drift hits both
        b.stack.tiers = table
        restart_authz(b, mode, 1)
        direct(b, mode, b.stack.ports.authz, "exact", 2)
        rates[name].append(direct(b, mode, b.stack.ports.authz, "exact", b.seconds)["rps"])
    b.stack.stop("authz")
    b.stack.tiers = small
    r3, r500 = (statistics.mean(rates[n]) for n in ("3", "500"))
    b.table.row(
        f"2. {mode}: authz direct, exact mode, 1 worker: checks/s with 3 tiers / with 500 tiers (mean of 2, interleaved)",
        f"{r3:,.0f} / {r500:,.0f}  (ratio {r500 / r3:.2f})",
    )


def webhook_rate(b: Bench, n: int = 2000) -> None:
    """4. Signed invoice.payment_failed events applied per second, 32 at a time."""
    import aiohttp
    import stripe

    b.stack.start("webhook")
    url = f"http://127.0.0.1:{b.stack.ports.webhook}/webhooks/stripe"
    now = int(time.time())
    bodies = []
    for i in range(n):
        event = {
            "id": f"evt_bench{i}",
            "type": "invoice.payment_failed",
            "created": now,
            "data": {
                "object": {
                    "customer": "cus_bench",
                    "parent": {"subscription_details": {"subscription": f"sub_bench{i}"}},
                }
            },
        }
        raw = json.dumps(event)
        sig = stripe.WebhookSignature.generate_signature_header(raw, WEBHOOK_SECRET)
        bodies.append((raw.encode(), sig))

    async def go() -> float:
        sem = asyncio.Semaphore(32)
        async with aiohttp.ClientSession() as http:

            async def post(raw: bytes, sig: str) -> None:
                async with sem, http.post(url, data=raw, headers={"Stripe-Signature": sig}) as r:
                    assert r.status == 200, await r.text()

            start = time.perf_counter()
            await asyncio.gather(*(post(*body) for body in bodies))
            return n / (time.perf_counter() - start)

    rate = asyncio.run(go())
    b.stack.stop("webhook")
    b.table.row("4. webhook: signed events applied per second (32 concurrent)", f"{rate:,.0f}")


def drain(b: Bench, mode: str, customers: int) -> None:
    """5. metering draining one closed window for ``customers``."""
    took, calls = drain_fresh(mode, customers, b.tmp / f"drain-{mode}", b.logs)
    b.table.row(
        f"5. metering: drain one window, {customers:,} customers, {mode}",
        f"{took:.1f} s, {calls:,} Stripe calls, {customers / took:,.0f} customers/s",
    )


def keyspace_rows(b: Bench, keys: int) -> None:
    """6. the keyspace at scale (bench/keyspace.py), authz in HTTP mode, exact, 1 worker.
    Leaves the keys in the bench's Redis: run it last."""
    restart_authz(b, "http", 1)
    url = f"http://127.0.0.1:{b.stack.ports.authz}/check/v1/things"

    def rate_over(keys_file: Path, warm_s: int) -> dict[str, float]:
        wrk(url, warm_s, None, keys_file=keys_file)  # connections, the keys' tier, the caches
        authz, redis = [b.pid("authz")], [b.pid("redis")]
        cpu0, rcpu0 = cpu_seconds(authz), cpu_seconds(redis)
        d = wrk(url, b.seconds, None, keys_file=keys_file)
        n = d["n"]
        return {
            "rps": d["rps"],
            "authz_us": (cpu_seconds(authz) - cpu0) / n * 1e6,
            "redis_us": (cpu_seconds(redis) - rcpu0) / n * 1e6,
            "rss": float(rss_bytes(authz[0])),
        }

    def size_caches(n: int) -> None:
        b.stack.env["TOLLWAY_AUTHZ_KEY_CACHE"] = str(n)
        restart_authz(b, "http", 1)

    accounts = keys // 10
    r = keyspace(b.redis_url, "bench", b.tmp, rate_over, keys, accounts, size_caches)
    del b.stack.env["TOLLWAY_AUTHZ_KEY_CACHE"]
    b.table.row(
        f"6. keyspace: {keys:,} keys over {accounts:,} accounts: Redis memory per key / per "
        "account (at rest)",
        f"{r['per_key']:,.0f} B / {r['per_account']:,.0f} B",
    )
    rates = r["rates"]
    base = rates["1k"]
    b.table.row(
        "6. keyspace: authz direct, http, exact, 1 worker, each request the next key, over "
        "1,000 keys: checks/s; authz / Redis CPU per check",
        f"{base['rps']:,.0f}; {base['authz_us']:.0f} / {base['redis_us']:.1f} µs",
    )
    samples = (
        ("warm", "warm sample (authz's caches hold them)"),
        ("beyond", "200,000-key sample (past authz's default caches)"),
        ("beyond_sized", "200,000-key sample, TOLLWAY_AUTHZ_KEY_CACHE sized to it"),
    )
    for name, what in samples:
        m = rates[name]
        b.table.row(
            f"6. keyspace: the same with {keys:,} keys, over the {what}: checks/s (÷ over "
            "1,000); authz / Redis CPU per check; authz's memory",
            f"{m['rps']:,.0f} ({m['rps'] / base['rps']:.2f}); "
            f"{m['authz_us']:.0f} / {m['redis_us']:.1f} µs; {m['rss'] / 2**20:,.0f} MiB",
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--customers", type=int, default=100_000, help="metering drain size (stream)")
    ap.add_argument(
        "--v1-customers",
        type=int,
        default=10_000,
        help="the v1 drain size: one call per customer at Stripe's 1,000/s, so 100k "
        "would take over 100 s by design",
    )
    ap.add_argument("--keys", type=int, default=1_000_000, help="keyspace row: keys (÷10 accounts)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "latest.md")
    args = ap.parse_args()
    table = Table()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "tiers.toml").write_text(TIERS)
        logs = LogFiles(tmp)
        b = Bench(new_stack(tmp, logs, tmp / "tiers.toml"), logs, tmp, args.seconds, table)
        try:
            prepare(b)
            ceil = ceilings(b)
            redis_clients(b)
            for workers in (1, 2):
                authz_direct(b, "grpc", workers, ceil)
            through_envoy(b, "grpc")
            http_ceil = http_ceiling(b)
            many_tiers(b, "http")
            for workers in (1, 2):
                authz_direct(b, "http", workers, http_ceil)
                if workers == 1:
                    verify_beside_check(b.stack, b.keys["exact"], b.seconds, b.table.row)
            through_envoy(b, "http")
            webhook_rate(b)
            keyspace_rows(b, args.keys)
        finally:
            b.stack.stop_all()
        drain(b, "stream", args.customers)
        drain(b, "v1", args.v1_customers)
    table.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
