"""Faults under load: real Envoy, a second process driving bounded load, and faults injected
in the middle of it. Each test ends by counting: requests sent, failed, and usage lost or
doubled (billed by metering, or counted in Redis, against the client's own 2xx count).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from devkit.seed import seed_prices
from devkit.stack import port_open, wait_for
from tests.e2e.conftest import Edge, fetch, running_edge
from tests.e2e.test_chaos import billed, counter, drained
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.e2e
TIERS = """
[tiers.strict]
requests_per_second = 100000.0
burst = 100000
monthly_quota = 0
over_quota = "bill"
on_store_error = "deny"

[tiers.sturdy]
requests_per_second = 100000.0
burst = 100000
monthly_quota = 0
over_quota = "bill"
on_store_error = "allow"
"""
METERING = {"TOLLWAY_USAGE_WINDOW_S": "1", "TOLLWAY_METERING_INTERVAL": "0.3",
            "TOLLWAY_METERING_CLOSE_SLACK_S": "0", "TOLLWAY_METERING_LOG_GRACE_S": "1",
            "TOLLWAY_METERING_LEASE_S": "2"}  # fmt: skip


class Load:
    """tests/e2e/loadgen.py in a process of its own, driving one thread per key."""

    def __init__(
        self, edge: Edge, tmp: Path, keys: dict[str, str], seconds: float, rate: float
    ) -> None:
        (tmp / "keys.json").write_text(json.dumps(keys))
        self.out = tmp / "load.json"
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.e2e.loadgen", "--port",
                                      str(edge.stack.ports.envoy), "--keys", str(tmp / "keys.json"),
                                      "--seconds", str(seconds), "--rate", str(rate), "--out", str(self.out)])  # fmt: skip

    def result(self) -> dict[str, dict]:
        assert self.proc.wait(60) == 0
        return json.loads(self.out.read_text())


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(len(ordered) * 0.99)] if ordered else 0.0


def report(name: str, results: dict[str, dict], faults: int) -> None:
    sent = sum(sum(r["statuses"].values()) for r in results.values())
    failed = sum(n for r in results.values() for s, n in r["statuses"].items() if s != "200")
    print(f"[{name}] requests {sent}, faults injected {faults}, non-2xx {failed}, "
          f"statuses {[(k, r['statuses']) for k, r in results.items()]}")  # fmt: skip


@pytest.mark.timeout(120)
def test_redis_killed_under_load_then_restarted(tmp_path):
    """SIGKILL redis-server (every node, on a cluster) mid-run, restart it 2 s later. deny tiers
    answer 503 fast, allow tiers keep serving, and metering bills every 2xx response, per
    customer. The one excess the product allows (README, Failure modes): a check Redis ran
    and made durable just before it died, whose reply never came back. authz refused it (or,
    on an allow tier, counted it again in memory) and reported it in
    tollway_authz_store_replies_lost_total; billed - 2xx is at most that count."""
    with running_edge(tmp_path, TIERS, env=METERING, redis_aof=True) as edge:
        asyncio.run(seed_prices(edge.stack.standin_url, parse_tiers(TIERS, "t")))
        keys = {"cus_strict": edge.issue("strict", customer="cus_strict")[0],
                "cus_sturdy": edge.issue("sturdy", customer="cus_sturdy")[0]}  # fmt: skip
        for key in keys.values():  # seen once, so that an allow tier can vouch for it later
            assert edge.get("/v1/things", key).status == 200
        edge.redis.close()
        load = Load(edge, tmp_path, keys, seconds=8, rate=60)
        time.sleep(2.0)
        edge.kill_redis()
        time.sleep(2.0)
        edge.restart_redis()
        results = load.result()
        report("redis killed", results, faults=1)

        strict, sturdy = results["cus_strict"], results["cus_sturdy"]
        assert set(strict["statuses"]) <= {"200", "503"} and strict["statuses"].get("503", 0) > 20
        assert strict["statuses"].get("200", 0) > 100  # served before and after the outage
        assert p99(strict["latencies_ms"]) < 500, "a dead Redis must cost one timeout, not seconds"
        assert sturdy["statuses"] == {"200": sum(sturdy["statuses"].values())}

        ok = Counter({c: r["statuses"].get("200", 0) + 1 for c, r in results.items()})  # + warm-up
        lost = counter(edge, "tollway_authz_store_replies_lost_total")
        # Billed for good once metering has nothing left: no usage waiting in Redis, nothing
        # open or pending for Stripe.
        wait_for(lambda: drained(edge, list(keys)), "metering drained", 40)
        got = billed(edge)
        assert got >= ok, (dict(got), dict(ok))  # no 2xx left unbilled
        excess = got.total() - ok.total()
        assert excess <= lost, f"billed {dict(got)}, 2xx {dict(ok)}, replies lost {lost}"
        print(f"[redis killed] billed - 2xx = {excess}, replies lost = {lost}")


def authz_workers(edge: Edge) -> dict[int, int]:
    """{worker index: pid} of the supervisor's live workers."""
    sup = edge.stack.procs["authz"].popen.pid
    out = {}
    for pid in map(int, Path(f"/proc/{sup}/task/{sup}/children").read_text().split()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if b"--worker-index" in argv:  # not an exited child waiting to be reaped
            out[int(argv[argv.index(b"--worker-index") + 1])] = pid
    return out


@pytest.mark.timeout(120)
def test_rolling_restart_of_authz_under_load_fails_nothing(tmp_path):
    """Two workers, SIGTERM one at a time under load: the client sees no failed request, and
    every 2xx is counted once in Redis. The next worker is stopped once Envoy's health check
    sees the restarted one serving and Envoy has sent it its share of checks for about 2 s.
    Envoy still sends a stopping worker a few checks after its drain. In gRPC mode they are
    refused before authz reads them and Envoy retries them on the other worker (the retry
    headers in envoy.yaml: without them, 20 to 36 of 1,500 requests got Envoy's own 503). A
    check Envoy writes just as the connection closes is not retried (authz might have
    counted it): stopping the next worker at once lost 1 of 1,500 in 1 of 11 gRPC runs and
    in one HTTP-mode CI run. Not the restart's: a check authz refuses by the store's policy
    (below)."""
    env = {"TOLLWAY_AUTHZ_DRAIN_S": "1.0"}  # the default; the local stack's is 0
    with running_edge(tmp_path, TIERS, workers=2, env=env) as edge:
        key, key_id = edge.issue("strict", customer="cus_roll")
        load = Load(edge, tmp_path, {"cus_roll": key}, seconds=10, rate=150)
        time.sleep(1.5)
        restarted = 0
        for worker in (0, 1):
            old = authz_workers(edge)[worker]
            os.kill(old, signal.SIGTERM)
            # The supervisor starts a fresh worker; wait until it serves on its own port again.
            wait_for(lambda w=worker, o=old: authz_workers(edge).get(w, o) != o, "new worker", 15)
            wait_for(lambda w=worker: port_open(edge.stack.ports.authz_workers + w), "port", 15)
            restarted += 1
            port = edge.stack.ports.authz_workers + worker
            wait_for(lambda p=port: envoy_sees_healthy(edge, p), "Envoy's health check", 15)
            if worker == 0:
                # Envoy has been sending the restarted worker checks for about 2 s (its share
                # here) before the next is stopped: a minReadySeconds; see the docstring.
                served = envoy_host_stat(edge, port, "rq_success")
                wait_for(lambda p=port, n=served: envoy_host_stat(edge, p, "rq_success") >= n + 150,
                         "Envoy sending the new worker checks", 15)  # fmt: skip
        results = load.result()
        report("rolling restart", results, faults=restarted)
        statuses = results["cus_roll"]["statuses"]
        # The restart fails nothing: no 503 of Envoy's own (a worker gone). A 503 authz decided
        # itself, by the tier's on_store_error, because a Redis reply missed the 100 ms store
        # timeout on a starved machine (make test-stress: 1 of 1,501 once, in cluster mode, on
        # the worker that was not restarting) is the store's policy, not the restart's: it
        # must be logged as such, one for one.
        policy = sum('"event": "decision"' in line and '"reason": "store_unavailable"' in line
                     for line in edge.logs)  # fmt: skip
        assert set(statuses) <= {"200", "503"}, statuses
        assert statuses.get("503", 0) <= policy, (statuses, policy)
        wait_for(lambda: edge.usage(key_id) == statuses["200"], "usage counted", 5)


def envoy_sees_healthy(edge: Edge, port: int) -> bool:
    """Envoy's admin /clusters lists the authz endpoint on ``port`` with no failed health
    check (Envoy sends it traffic again)."""
    status, body = fetch(f"http://127.0.0.1:{edge.stack.ports.envoy_admin}/clusters")
    flags = [line for line in body.decode().splitlines() if f":{port}::health_flags::" in line]
    return status == 200 and bool(flags) and all(line.endswith("::healthy") for line in flags)


def envoy_host_stat(edge: Edge, port: int, stat: str) -> int:
    """A per-host counter of the authz endpoint on ``port`` in Envoy's admin /clusters."""
    body = fetch(f"http://127.0.0.1:{edge.stack.ports.envoy_admin}/clusters")[1].decode()
    m = re.search(rf"^tollway_authz::[^\n]*:{port}::{stat}::(\d+)$", body, re.M)
    return int(m.group(1)) if m else 0


@pytest.mark.timeout(60)
def test_redis_partition_opens_the_breaker_and_recovers(tmp_path):
    """redis-server (every node, on a cluster) frozen with SIGSTOP under load: connections hang
    and nothing is refused. Answers stay fast 503s while the breaker is open, and service
    resumes once Redis does."""
    with running_edge(tmp_path, TIERS) as edge:
        key, key_id = edge.issue("strict", customer="cus_part")
        assert edge.get("/v1/things", key).status == 200
        load = Load(edge, tmp_path, {"cus_part": key}, seconds=7, rate=80)
        redis_pids = edge.redis_pids()
        time.sleep(1.5)
        for pid in redis_pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: "tollway_authz_breaker_open 1.0" in edge.authz_metrics(),
                     "the breaker opened", 4)  # fmt: skip
        finally:
            for pid in redis_pids:
                os.kill(pid, signal.SIGCONT)
        results = load.result()
        report("partition", results, faults=1)
        r = results["cus_part"]
        assert set(r["statuses"]) <= {"200", "503"} and r["statuses"].get("503", 0) > 20
        assert p99(r["latencies_ms"]) < 500
        # The last second ran after recovery: all of it was served.
        assert edge.get("/v1/things", key).status == 200
        assert "tollway_authz_breaker_open 0.0" in edge.authz_metrics()
        # Every 2xx is counted once (with the requests before and after the load). A 503 is
        # not, as the checks a frozen Redis runs when it resumes are past their deadline
        # (void), with one exception the product reports rather than prevents: a check Redis
        # ran in time whose reply reached authz after its read timeout (replies lost) is
        # counted but refused. A check whose answer reached Envoy after Envoy's own timeout
        # (unheard) is counted, then refunded when Envoy's access log shows it answered 503
        # itself (metering/receiver.py). Before that refund, a starved machine (make
        # test-stress) showed 1 unheard in 561.
        ok = r["statuses"]["200"] + 2
        wait_for(lambda: edge.usage(key_id) >= ok, "usage", 5)
        lost = counter(edge, "tollway_authz_store_replies_lost_total")
        unheard = counter(edge, "tollway_authz_answers_unheard_total")
        # Envoy flushes its log every 0.5 s; a stalled authz notes an unheard check late.
        wait_for(lambda: edge.usage(key_id) <= ok + lost, "unheard refunds", 10)
        assert ok <= edge.usage(key_id) <= ok + lost, (edge.usage(key_id), ok, lost, unheard)
