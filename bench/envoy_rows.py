"""`make bench`, rows 3: Envoy alone, Envoy + the empty handler, Envoy + the lean reference
(HTTP mode) and Envoy + authz, at saturation and at about 1,000 rps (bench/listeners.py
builds the listeners)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import yaml

from bench.harness import Bench
from bench.listeners import envoy_config
from bench.load import wrk
from bench.probes import worker_ok
from devkit import binaries
from devkit.stack import free_port, http_ok


@dataclass
class EnvoyPorts:
    with_authz: int
    baseline: int
    with_ceiling: int
    with_reference: int = 0  # HTTP mode: the lean reference (bench/reference.py)


def start_envoy(b: Bench, mode: str) -> EnvoyPorts:
    """Envoy (the shipped config of ``mode``) in front of authz's two workers, plus a listener
    to that mode's empty handler, kept up behind it: what Envoy's ext_authz plus the server
    stack cost before authz does anything."""
    cport = b.start_ceiling("uvloop") if mode == "grpc" else b.start_http_ceiling()
    p = b.stack.ports
    ports = EnvoyPorts(p.envoy, free_port(), free_port())
    others = {"with_ceiling": (ports.with_ceiling, cport)}
    if mode == "http":
        ports.with_reference = free_port()
        others["with_reference"] = (ports.with_reference, b.start_reference())
    workers = [p.authz_workers + i for i in range(b.stack.authz_workers)]
    cfg = b.tmp / "envoy.yaml"
    config = envoy_config(ports.with_authz, ports.baseline, p.envoy_admin, workers, others, mode)
    cfg.write_text(yaml.safe_dump(config))
    argv = [
        binaries.envoy(),
        "-c",
        str(cfg),
        "--disable-hot-restart",
        "--log-level",
        "warn",
        "--concurrency",
        "2",
    ]
    b.stack.start_process("envoy", argv, lambda: http_ok(f"http://127.0.0.1:{p.envoy_admin}/ready"))
    wrk(f"http://127.0.0.1:{ports.with_authz}/", 2, b.keys["exact"])  # warm up
    return ports


def envoy_saturated(b: Bench, e: EnvoyPorts, mode: str) -> None:
    """3. Envoy alone, Envoy + the empty handler, and Envoy + authz (2 workers) at saturation,
    per limiter mode, and the refusals authz logged meanwhile."""
    mport, workers = b.stack.ports.authz_metrics, b.stack.authz_workers
    base = wrk(f"http://127.0.0.1:{e.baseline}/", b.seconds, b.keys["exact"])
    empty = wrk(f"http://127.0.0.1:{e.with_ceiling}/", b.seconds, b.keys["exact"])
    b.table.row(
        f"3. {mode}: Envoy alone / Envoy + empty handler, rps at saturation",
        f"{base['rps']:,.0f} / {empty['rps']:,.0f}  (ratio {empty['rps'] / base['rps']:.3f})",
    )
    ref = 0.0
    if e.with_reference:
        r = wrk(f"http://127.0.0.1:{e.with_reference}/", b.seconds, b.keys["exact"])
        ref = r["rps"]
        b.table.row(
            "3. http: Envoy + the lean reference (one EVALSHA per check, bench/reference.py), "
            "rps at saturation",
            f"{ref:,.0f}  (÷ Envoy alone {ref / base['rps']:.3f}; non-2xx {r['errors']:.0f})",
        )
    logged = len(b.logs.read("authz").splitlines())
    for limiter in ("exact", "lease"):
        before = worker_ok(mport, workers)
        auth = wrk(f"http://127.0.0.1:{e.with_authz}/", b.seconds, b.keys[limiter])
        spread = [a - z for a, z in zip(worker_ok(mport, workers), before, strict=True)]
        versus = f"; ÷ the lean reference {auth['rps'] / ref:.2f}" if ref else ""
        b.table.row(
            f"3. {mode}: Envoy + authz ({limiter} mode, 2 workers), rps at saturation",
            f"{auth['rps']:,.0f}  (÷ Envoy alone {auth['rps'] / base['rps']:.3f}; "
            f"÷ Envoy + empty handler {auth['rps'] / empty['rps']:.2f}{versus}); "
            f"non-2xx {auth['errors']:.0f} of {auth['n']:,.0f}; checks per worker {spread}",
        )
    alog = b.logs.read("authz").splitlines()[logged:]
    refusals = [x for x in alog if '"store_error"' in x or '"overloaded"' in x]
    for line in refusals[:3]:
        print(f"      {line[:300]}", flush=True)
    causes = {c: sum(f'"event": "{c}"' in x for x in alog) for c in ("store_error", "overloaded")}
    b.table.row(
        "   authz's own refusals logged during the run (store_error / overloaded)",
        f"{causes['store_error']} / {causes['overloaded']}",
    )


def added_latency(b: Bench, e: EnvoyPorts, mode: str) -> None:
    """3. (paced) Latency added at about 1,000 rps, against Envoy alone: runs interleaved three
    times each, medians, so one hiccup cannot decide."""
    paced = {
        "base": (e.baseline, "exact"),
        "exact": (e.with_authz, "exact"),
        "lease": (e.with_authz, "lease"),
        "ceiling": (e.with_ceiling, "exact"),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in paced}
    for _ in range(3):
        for name, (port, limiter) in paced.items():
            runs[name].append(
                wrk(
                    f"http://127.0.0.1:{port}/",
                    max(3, b.seconds // 3),
                    b.keys[limiter],
                    conns=10,
                    delay_ms=10,
                )
            )
    slow = {
        name: {k: statistics.median([r[k] for r in runs[name]]) for k in ("rps", "p50", "p99")}
        for name in paced
    }
    base = slow["base"]
    for name, label in (
        ("exact", "authz, exact mode"),
        ("lease", "authz, lease mode"),
        ("ceiling", "the empty handler"),
    ):
        a = slow[name]
        b.table.row(
            f"   {mode}: at ~1,000 rps, {label} (achieved {a['rps']:,.0f}; median of 3): added p50 / p99",
            f"{a['p50'] - base['p50']:.2f} ms / {a['p99'] - base['p99']:.2f} ms"
            f"  (Envoy alone p50 {base['p50']:.2f}, p99 {base['p99']:.2f} ms)",
        )


def through_envoy(b: Bench, mode: str) -> None:
    """3. Envoy in front of authz's two workers in ``mode``; then Envoy and its ceiling stop."""
    ports = start_envoy(b, mode)
    envoy_saturated(b, ports, mode)
    added_latency(b, ports, mode)
    b.stack.stop("envoy")
    b.stack.stop("ceiling")
    b.stack.stop("reference")
