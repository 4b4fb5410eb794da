"""`make bench`: authz measured side by side with what it sits on, in one run, one table.

Starts its own redis-server, the gRPC ceiling (bench/ceiling.py), authz, Envoy with two
listeners (one with ext_authz from envoy/envoy.yaml, one without; both answer directly, so no
upstream is measured), and the webhook service. Ratios within the run are what count: this
machine is small and noisy.

    python bench/run.py [--seconds 8] [--customers 100000] [--v1-customers 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3 import external_auth_pb2 as pb

from bench.drain import run_mode
from devkit import binaries
from devkit.envoy_config import render
from devkit.stack import die_with_parent, free_port, http_ok, port_open, redis_argv, wait_for
from tollway.keys import KeyHasher, generate_key
from tollway.redis_client import connect
from tollway.store import KeyStore

HERE = Path(__file__).parent
TIERS = (
    '[tiers.bench]\nrequests_per_second = 1000000.0\nburst = 1000000\nmonthly_quota = 0\nover_quota = "bill"\n'
    '[tiers.bench_lease]\nrequests_per_second = 1000000.0\nburst = 1000000\nmonthly_quota = 0\nover_quota = "bill"\n'
    'limiter = "lease"\nlease_tokens = 100\n'
)  # fmt: skip
CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check"


class Procs:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        out = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                preexec_fn=die_with_parent)  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def check_body(key: str) -> bytes:
    """A CheckRequest as Envoy sends one (12 headers), framed for gRPC."""
    headers = {
        ":authority": "api.example.com", ":method": "GET", ":path": "/v1/things?page=2", ":scheme": "http",
        "user-agent": "Mozilla/5.0 (X11; Linux x86_64)", "accept": "application/json",
        "accept-encoding": "gzip, deflate", "x-forwarded-proto": "http",
        "x-request-id": "6b1f4c1e-6f7a-4c3e-9d2b-3f0f7f6c2a11", "x-envoy-expected-rq-timeout-ms": "15000",
        "content-length": "0", "x-api-key": key,
    }  # fmt: skip
    req = pb.CheckRequest(attributes=ac.AttributeContext(
        source=ac.AttributeContext.Peer(), destination=ac.AttributeContext.Peer(),
        request=ac.AttributeContext.Request(http=ac.AttributeContext.HttpRequest(
            id="1234567890", method="GET", headers=headers, path="/v1/things?page=2",
            host="api.example.com", scheme="http", protocol="HTTP/1.1")),
    ))  # fmt: skip
    raw = req.SerializeToString()
    return b"\x00" + len(raw).to_bytes(4, "big") + raw


def h2load(
    port: int, body: Path, seconds: int, log: Path, conns: int = 4, streams: int = 16
) -> dict[str, float]:
    out = subprocess.run(
        ["h2load", "-c", str(conns), "-m", str(streams), "-D", str(seconds), "-d", str(body),
         "-H", "content-type: application/grpc", "-H", "te: trailers", "--log-file", str(log),
         f"http://127.0.0.1:{port}{CHECK_PATH}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rate = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    assert done and done.group(1) == done.group(2), out
    lat = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.strip())
    return {"rps": rate, "n": float(done.group(1)), "p50": lat[len(lat) // 2] / 1000,
            "p99": lat[int(len(lat) * 0.99)] / 1000}  # fmt: skip


def wrk(
    url: str, seconds: int, key: str | None, conns: int = 32, delay_ms: int | None = None
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        if key:
            f.write(f'wrk.headers["x-api-key"] = "{key}"\n')
        if delay_ms is not None:
            f.write(f"function delay() return {delay_ms} end\n")
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", f.name, url],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    os.unlink(f.name)

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50": ms("50%"), "p99": ms("99%"), "errors": float(bad.group(1)) if bad else 0.0,
            "n": float(total.group(1)) if total else 0.0}  # fmt: skip


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def authz_pids(proc: subprocess.Popen[bytes]) -> list[int]:
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return [proc.pid, *map(int, children)]


def redis_calls(url: str) -> tuple[int, int]:
    """(round trips, all commands) so far: EVAL/EVALSHA are round trips; the commands a script
    runs inside Redis count as commands but cost no trip."""

    async def go() -> tuple[int, int]:
        r = connect(url)
        stats = await r.info("commandstats")
        await r.aclose()
        inside = {"hmget", "hget", "hset", "hincrby", "expire", "time", "exists", "get", "set", "hdel",
                  "hgetall", "incr", "pexpire"}  # fmt: skip
        calls = {
            k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k != "cmdstat_info"
        }
        trips = sum(n for name, n in calls.items() if name not in inside)
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


def envoy_config(
    auth_port: int, base_port: int, admin: int, authz: int | list[int],
    ceiling_listener: int | None = None, ceiling: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Listeners answering directly: one with ext_authz, one without, and optionally one with
    ext_authz to the empty-handler ceiling. The filter and the authz cluster are taken from
    envoy/envoy.yaml, with the cluster pointed at ``authz`` (one port per worker)."""
    shipped = render(0, 0, authz, 0)
    hcm_filter = shipped["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    ext_authz = hcm_filter["typed_config"]["http_filters"][0]
    router = hcm_filter["typed_config"]["http_filters"][-1]
    cluster = next(
        c for c in shipped["static_resources"]["clusters"] if c["name"] == "tollway_authz"
    )

    def listener(name: str, port: int, filters: list[Any]) -> dict[str, Any]:
        return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{"name": hcm_filter["name"], "typed_config": {
                    "@type": hcm_filter["typed_config"]["@type"], "stat_prefix": name,
                    "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": [
                        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]},
                    "http_filters": [*filters, router]}}]}]}  # fmt: skip

    listeners = [
        listener("with_authz", auth_port, [ext_authz]),
        listener("baseline", base_port, []),
    ]
    clusters = [cluster]
    if ceiling_listener is not None and ceiling is not None:
        to_ceiling = copy.deepcopy(ext_authz)
        to_ceiling["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] = "bench_ceiling"
        ceiling_cluster = copy.deepcopy(cluster)
        ceiling_cluster["name"] = ceiling_cluster["load_assignment"]["cluster_name"] = (
            "bench_ceiling"
        )
        ceiling_cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": ceiling}}}}]}]  # fmt: skip
        listeners.append(listener("with_ceiling", ceiling_listener, [to_ceiling]))
        clusters.append(ceiling_cluster)
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {"listeners": listeners, "clusters": clusters}}  # fmt: skip


def webhook_rate(procs: Procs, redis_url: str, tiers: Path, n: int) -> float:
    import aiohttp
    import stripe

    port, secret = free_port(), "whsec_bench"
    proc = procs.start("webhook", [sys.executable, "-m", "webhook", "--port", str(port), "--redis-url", redis_url,
                                   "--tiers", str(tiers)], {"STRIPE_WEBHOOK_SECRET": secret, "TOLLWAY_LOG_LEVEL": "WARNING"})  # fmt: skip
    wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), "webhook", 20)
    now = int(time.time())
    bodies = []
    for i in range(n):
        event = {"id": f"evt_bench{i}", "type": "invoice.payment_failed", "created": now, "data": {"object": {
            "customer": "cus_bench", "parent": {"subscription_details": {"subscription": f"sub_bench{i}"}}}}}  # fmt: skip
        raw = json.dumps(event)
        bodies.append(
            (raw.encode(), stripe.WebhookSignature.generate_signature_header(raw, secret))
        )

    async def go() -> float:
        sem = asyncio.Semaphore(32)
        async with aiohttp.ClientSession() as http:

            async def post(raw: bytes, sig: str) -> None:
                async with sem, http.post(f"http://127.0.0.1:{port}/webhooks/stripe", data=raw,
                                          headers={"Stripe-Signature": sig}) as r:  # fmt: skip
                    assert r.status == 200, await r.text()

            start = time.perf_counter()
            await asyncio.gather(*(post(*b) for b in bodies))
            return n / (time.perf_counter() - start)

    rate = asyncio.run(go())
    procs.stop(proc)
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--customers", type=int, default=100_000, help="metering drain size (stream)")
    ap.add_argument("--v1-customers", type=int, default=10_000,
                    help="the v1 drain size: one call per customer at Stripe's 1,000/s, so 100k "
                         "would take over 100 s by design")  # fmt: skip
    ap.add_argument("--out", type=Path, default=HERE / "results" / "latest.md")
    args = ap.parse_args()
    s = args.seconds
    rows: list[tuple[str, str]] = []

    def row(name: str, value: str) -> None:
        rows.append((name, value))
        print(f"{name:<62} {value}", flush=True)

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        procs = Procs(tmp)
        try:
            rport = free_port()
            redis_proc = procs.start("redis", redis_argv(rport, tmp))
            wait_for(lambda: port_open(rport), "redis", 10)
            redis_url = f"redis://127.0.0.1:{rport}/0"
            tiers = tmp / "tiers.toml"
            tiers.write_text(TIERS)

            async def make_key(tier: str) -> str:
                r = connect(redis_url)
                key, _ = await KeyStore(r, KeyHasher()).create(tier, "cus_bench")
                await r.aclose()
                return key

            key = asyncio.run(make_key("bench"))
            body = tmp / "check.bin"
            body.write_bytes(check_body(key))
            lease_key = asyncio.run(make_key("bench_lease"))
            lease_body = tmp / "check_lease.bin"
            lease_body.write_bytes(check_body(lease_key))
            unknown_body = tmp / "check_unknown.bin"  # well-formed, valid checksum, never issued
            unknown_body.write_bytes(check_body(generate_key()))

            ceilings = {}
            for name, loop, ping in (("asyncio", "asyncio", False), ("uvloop", "uvloop", False),
                                     ("ping", "uvloop", True)):  # fmt: skip
                cport = free_port()
                argv = [
                    sys.executable,
                    str(HERE / "ceiling.py"),
                    "--port",
                    str(cport),
                    "--loop",
                    loop,
                ]
                ceiling = procs.start(
                    "ceiling", argv + (["--redis-url", redis_url] if ping else [])
                )
                wait_for(lambda cport=cport: port_open(cport), "ceiling", 20)
                h2load(cport, body, 1, tmp / "warm.log")
                cpu0 = cpu_seconds([ceiling.pid])
                c = h2load(cport, body, s, tmp / "ceil.log")
                c["cpu_us"] = (cpu_seconds([ceiling.pid]) - cpu0) / c["n"] * 1e6
                procs.stop(ceiling)
                ceilings[name] = c
            ceil = ceilings["asyncio"]
            for name, label in (
                ("asyncio", "1. gRPC ceiling (empty handler, asyncio loop), checks/s, h2load h2c"),
                ("uvloop", "   the same empty handler on uvloop (what authz runs on)"),
                ("ping", "   the uvloop empty handler + one redis-py PING per check"),
            ):
                c = ceilings[name]
                row(label, f"{c['rps']:,.0f}  ({c['rps'] / ceil['rps']:.2f})  p50 {c['p50']:.2f} ms, "
                           f"p99 {c['p99']:.2f} ms, CPU {c['cpu_us']:.0f} µs/check")  # fmt: skip

            worker_ports: list[int] = []
            for workers in (1, 2):
                aport, mport, wport = free_port(), free_port(), free_port()
                while any(port_open(mport + i) or port_open(wport + i) for i in range(workers)):
                    mport, wport = free_port(), free_port()
                authz = procs.start("authz", [sys.executable, "-m", "authz", "--port", str(aport), "--metrics-port",
                                              str(mport), "--workers", str(workers), "--redis-url", redis_url,
                                              "--tiers", str(tiers), "--worker-port-base", str(wport)], {"TOLLWAY_LOG_LEVEL": "WARNING"})  # fmt: skip
                ports = [aport, *(mport + i for i in range(workers))]
                wait_for(lambda ports=ports: all(port_open(p) for p in ports), "authz", 20)
                h2load(aport, body, 2, tmp / "warm.log")  # warm up: connections, script cache
                pids = authz_pids(authz) if workers > 1 else [authz.pid]
                modes = [("exact mode", body)]
                if workers == 1:
                    modes += [
                        ("lease mode", lease_body),
                        ("one unknown key, flooded", unknown_body),
                    ]
                for mode, mode_body in modes:
                    h2load(aport, mode_body, 1, tmp / "warm.log")
                    before_ok, before_cpu, before_redis, before_pipes, before_rcpu = (
                        worker_ok(mport, workers), cpu_seconds(pids), redis_calls(redis_url),
                        pipelines(mport, workers), cpu_seconds([redis_proc.pid]),
                    )  # fmt: skip
                    d = h2load(aport, mode_body, s, tmp / f"authz{workers}.log")
                    after_ok, after_cpu, after_redis, after_pipes, after_rcpu = (
                        worker_ok(mport, workers), cpu_seconds(pids), redis_calls(redis_url),
                        pipelines(mport, workers), cpu_seconds([redis_proc.pid]),
                    )  # fmt: skip
                    redis_us = (after_rcpu - before_rcpu) / d["n"] * 1e6
                    spread = [a - b for a, b in zip(after_ok, before_ok, strict=True)]
                    cpu_us = (after_cpu - before_cpu) / d["n"] * 1e6
                    scripts = (after_redis[0] - before_redis[0]) / d["n"]
                    commands = (after_redis[1] - before_redis[1]) / d["n"]
                    pipes = (after_pipes - before_pipes) / d["n"]
                    row(f"2. authz direct, {mode}, {workers} worker(s), checks/s (÷ ceiling)",
                        f"{d['rps']:,.0f}  ({d['rps'] / ceil['rps']:.2f})  p50 {d['p50']:.2f} ms, p99 {d['p99']:.2f} ms")  # fmt: skip
                    row("   CPU per check / Redis round trips (scripts; commands) per check / Redis CPU per check / checks per worker",
                        f"{cpu_us:.0f} µs / {pipes:.3f} ({scripts:.3f}; {commands:.2f}) / {redis_us:.1f} µs / {spread}")  # fmt: skip
                if workers == 2:
                    worker_ports = [wport, wport + 1]
                else:
                    procs.stop(authz)

            # The uvloop empty handler stays up behind a listener of its own: what Envoy's
            # ext_authz plus grpc.aio cost before authz does anything.
            cport = free_port()
            procs.start("ceiling", [sys.executable, str(HERE / "ceiling.py"), "--port", str(cport), "--loop", "uvloop"])  # fmt: skip
            wait_for(lambda: port_open(cport), "ceiling", 20)
            e_auth, e_base, e_ceil, admin = free_port(), free_port(), free_port(), free_port()
            cfg = tmp / "envoy.yaml"
            cfg.write_text(
                yaml.safe_dump(envoy_config(e_auth, e_base, admin, worker_ports, e_ceil, cport))
            )
            procs.start("envoy", [binaries.envoy(), "-c", str(cfg), "--disable-hot-restart", "--log-level", "warn",
                                  "--concurrency", "2"])  # fmt: skip
            wait_for(lambda: http_ok(f"http://127.0.0.1:{admin}/ready"), "envoy", 20)
            wrk(f"http://127.0.0.1:{e_auth}/", 2, key)  # warm up
            base = wrk(f"http://127.0.0.1:{e_base}/", s, key)
            saturated = {}
            for mode, mode_key in (("exact", key), ("lease", lease_key)):
                before_ok = worker_ok(mport, 2)
                saturated[mode] = wrk(f"http://127.0.0.1:{e_auth}/", s, mode_key)
                saturated[mode]["spread"] = [
                    a - b for a, b in zip(worker_ok(mport, 2), before_ok, strict=True)
                ]  # type: ignore[assignment]
            for mode, auth in saturated.items():
                row(f"3. Envoy alone / Envoy + authz ({mode} mode, 2 workers), rps at saturation",
                    f"{base['rps']:,.0f} / {auth['rps']:,.0f}  (ratio {auth['rps'] / base['rps']:.3f}); "
                    f"non-2xx {auth['errors']:.0f} of {auth['n']:,.0f}; checks per worker {auth['spread']}")  # fmt: skip
            alog = (tmp / "authz.log").read_text(errors="replace")
            causes = {e: alog.count(f'"event": "{e}"') for e in ("store_error", "overloaded")}
            for line in [
                x for x in alog.splitlines() if '"store_error"' in x or '"overloaded"' in x
            ][:3]:
                print(f"      {line[:300]}", flush=True)
            row(
                "   authz's own refusals logged during the run (store_error / overloaded)",
                f"{causes['store_error']} / {causes['overloaded']}",
            )
            # Paced runs, interleaved three times each; medians, so one hiccup cannot decide.
            paced = {"base": (e_base, key), "exact": (e_auth, key), "lease": (e_auth, lease_key),
                     "ceiling": (e_ceil, key)}  # fmt: skip
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in paced}
            for _ in range(3):
                for name, (port, k) in paced.items():
                    runs[name].append(
                        wrk(f"http://127.0.0.1:{port}/", max(3, s // 3), k, conns=10, delay_ms=10)
                    )
            slow = {name: {k: statistics.median([r[k] for r in runs[name]]) for k in ("rps", "p50", "p99")}
                    for name in paced}  # fmt: skip
            b = slow["base"]
            for name, label in (("exact", "authz, exact mode"), ("lease", "authz, lease mode"),
                                ("ceiling", "the empty handler (uvloop)")):  # fmt: skip
                a = slow[name]
                row(f"   at ~1,000 rps, {label} (achieved {a['rps']:,.0f}; median of 3): added p50 / p99",
                    f"{a['p50'] - b['p50']:.2f} ms / {a['p99'] - b['p99']:.2f} ms"
                    f"  (Envoy alone p50 {b['p50']:.2f}, p99 {b['p99']:.2f} ms)")  # fmt: skip

            rate = webhook_rate(procs, redis_url, tiers, 2000)
            row("4. webhook: signed events applied per second (32 concurrent)", f"{rate:,.0f}")
        finally:
            procs.stop_all()
        for mode, customers in (("stream", args.customers), ("v1", args.v1_customers)):
            took, calls = drain(mode, customers)
            row(f"5. metering: drain one window, {customers:,} customers, {mode}",
                f"{took:.1f} s, {calls:,} Stripe calls, {customers / took:,.0f} customers/s")  # fmt: skip

    lines = [f"tollway bench, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             "| measure | value |", "|---|---|", *(f"| {n.strip()} | {v} |" for n, v in rows), ""]  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"\nwritten to {args.out}")
    return 0


def drain(mode: str, customers: int) -> tuple[float, int]:
    """(seconds, Stripe calls) to drain one window for ``customers``, on a fresh redis-server."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            redis_argv(port, Path(data)), stdout=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        try:
            wait_for(lambda: port_open(port), "redis", 10)
            took, calls, _ = asyncio.run(run_mode(mode, customers, f"redis://127.0.0.1:{port}/0"))
            return took, calls
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
