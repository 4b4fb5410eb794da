"""What every row of `make bench` shares (bench/run.py): the stack and its logs, the result
table, the keys and request bodies, loading authz directly, restarting it in a mode."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from authz.request import BUCKET_HEADER
from bench.load import check_body, h2load, wrk
from devkit.stack import Ports, Sink, Stack, free_port, port_open, wait_for
from tollway.credits import Credits, Movement
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher, generate_key
from tollway.redis_client import connect

HERE = Path(__file__).parent
# The exact-mode tier alone, in fields every revision reads: what bench/ab.py compares.
EXACT_TIER = '[tiers.bench]\nrequests_per_second = 1000000.0\nburst = 1000000\nmonthly_quota = 0\nover_quota = "bill"\n'
TIERS = (
    EXACT_TIER
    + '[tiers.bench_lease]\nrequests_per_second = 1000000.0\nburst = 1000000\nmonthly_quota = 0\nover_quota = "bill"\n'
    'limiter = "lease"\nlease_tokens = 100\n'
    # the bench tier with every limit on, never reached: the day's and hour's caps, a
    # concurrency cap, and the checked route's own bucket (LIMITS_BUCKET): what they cost
    '[tiers.bench_limits]\nrequests_per_second = 1000000.0\nburst = 1000000\nmonthly_quota = 0\nover_quota = "bill"\n'
    "per_day = 1000000000000\nper_hour = 1000000000000\nmax_concurrent = 1000000000000\n"
    "[tiers.bench_limits.buckets.route]\nrequests_per_second = 1000000.0\nburst = 1000000\n"
    # a prepaid tier: each check spends a credit from a balance the run never exhausts
    '[tiers.bench_prepaid]\nrequests_per_second = 1000000.0\nburst = 1000000\nmonthly_quota = 0\nover_quota = "block"\n'
    "prepaid = true\n"
)
PREPAID_BALANCE = 10**15
LIMITS_BUCKET = "route"
# Direct loads have no access log to free concurrency slots, and the cap is never reached, so
# the account's set of slots grows through the run (hundreds of thousands): a worst case for
# ZADD, where an access log keeps it at the requests in flight.
WEBHOOK_SECRET = "whsec_bench"  # noqa: S105 (the bench's own)


class LogFiles:
    """The stack's sink: each process's output to ``<dir>/<name>.log``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[str, IO[str]] = {}
        self.lock = threading.Lock()

    def __call__(self, name: str, line: str) -> None:
        with self.lock:
            if name not in self.files:
                self.files[name] = (self.directory / f"{name}.log").open("a", encoding="utf-8")
            self.files[name].write(line + "\n")
            self.files[name].flush()

    def read(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Table:
    rows: list[tuple[str, str]] = field(default_factory=list)

    def row(self, name: str, value: str) -> None:
        self.rows.append((name, value))
        print(f"{name:<62} {value}", flush=True)

    def write(self, out: Path) -> None:
        lines = [
            f"tollway bench, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            "",
            "| measure | value |",
            "|---|---|",
            *(f"| {n.strip()} | {v} |" for n, v in self.rows),
            "",
        ]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines))
        print(f"\nwritten to {out}")


@dataclass
class Bench:
    """What every measurement shares: the stack, the run length, the keys and their requests."""

    stack: Stack
    logs: LogFiles
    tmp: Path
    seconds: int
    table: Table
    keys: dict[str, str] = field(default_factory=dict)  # "exact" | "lease" | "limits" -> a key
    unknown_key: str = ""  # well formed, valid checksum, never issued
    bodies: dict[str, Path] = field(default_factory=dict)  # also "unknown": never issued
    reference_rps: float = 0.0  # the lean reference's checks/s, wrk direct (http_ceiling)
    grpc_reference_rps: float = 0.0  # the gRPC lean reference's, h2load direct (ceilings)

    @property
    def redis_url(self) -> str:
        return self.stack.effective_redis_url

    def pid(self, name: str) -> int:
        return self.stack.procs[name].popen.pid

    def start_ceiling(self, loop: str, reference: bool = False) -> int:
        """The empty-handler gRPC server (bench/ceiling.py), or with ``reference`` the gRPC
        lean reference on this bench's Redis; returns its port."""
        port = free_port()
        argv = [sys.executable, str(HERE / "ceiling.py"), "--port", str(port), "--loop", loop]
        argv += ["--redis-port", str(self.stack.ports.redis)] if reference else []
        self.stack.start_process("ceiling", argv, lambda: port_open(port))
        return port

    def start_reference(self) -> int:
        """The lean reference (bench/reference.py) on this bench's Redis; returns its port."""
        port = free_port()
        argv = [sys.executable, str(HERE / "reference.py"), "--port", str(port)]
        argv += ["--redis-port", str(self.stack.ports.redis)]
        self.stack.start_process("reference", argv, lambda: port_open(port))
        return port

    def start_http_ceiling(self) -> int:
        """authz's HTTP front with an empty handler (bench/http_ceiling.py); returns its port."""
        port = free_port()
        argv = [sys.executable, str(HERE / "http_ceiling.py"), "--port", str(port)]
        self.stack.start_process("ceiling", argv, lambda: port_open(port))
        return port


def prepare(b: Bench) -> None:
    """redis-server, the tier table, a key per limiter mode, and one CheckRequest body each."""
    b.stack.start("redis")

    async def make_key(tier: str) -> str:
        r = connect(b.redis_url)
        key, record = await KeyStore(r, KeyHasher()).create(tier, f"cus_bench_{tier}")
        if tier == "bench_prepaid":
            credits = Credits(r)
            await credits.move(
                record.account, "bench", PREPAID_BALANCE, Movement.GRANT, "bench", "bench"
            )
        await r.aclose()
        return key

    b.keys = {
        "exact": asyncio.run(make_key("bench")),
        "lease": asyncio.run(make_key("bench_lease")),
        "limits": asyncio.run(make_key("bench_limits")),
        "prepaid": asyncio.run(make_key("bench_prepaid")),
    }
    b.unknown_key = generate_key()
    for name, key in (*b.keys.items(), ("unknown", b.unknown_key)):
        b.bodies[name] = b.tmp / f"check_{name}.bin"
        route = {"tollway_bucket": LIMITS_BUCKET} if name == "limits" else {}
        b.bodies[name].write_bytes(check_body(key, route))


def direct(b: Bench, mode: str, port: int, body: str, seconds: int) -> dict[str, float]:
    """Load authz (or a ceiling) directly: gRPC checks with h2load, HTTP checks with wrk."""
    if mode == "grpc":
        return h2load(port, b.bodies[body], seconds, b.tmp / "direct.log")
    key = b.keys.get(body, b.unknown_key)
    route = {BUCKET_HEADER: LIMITS_BUCKET} if body == "limits" else None
    return wrk(f"http://127.0.0.1:{port}/check/v1/things", seconds, key, conns=32, headers=route)


def restart_authz(b: Bench, mode: str, workers: int) -> None:
    b.stack.stop("authz")
    b.stack.authz_mode, b.stack.authz_workers = mode, workers
    b.stack.start("authz")
    mport = b.stack.ports.authz_metrics
    wait_for(lambda: all(port_open(mport + i) for i in range(workers)), "authz metrics", 20)


def new_stack(state_dir: Path, sink: Sink, tiers: Path | None = None) -> Stack:
    env = {
        "TOLLWAY_LOG_LEVEL": "WARNING",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TOLLWAY_API_PER_TOKEN": "100000000",  # the bench measures verify, not its rate limit
    }
    return Stack(
        Ports.free(), tiers or state_dir / "tiers.toml", state_dir, sink, standin=False, env=env
    )
