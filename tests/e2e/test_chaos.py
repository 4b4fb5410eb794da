"""Metering chaos: what Stripe bills equals what Envoy let through, to the request.

Real Envoy, authz, Redis, metering and the Stripe stand-in. Client threads drive allowed
requests for several customers while the metering daemon is SIGKILLed at random moments and
the stand-in answers with 429s, 5xx, resets and accepted-but-lost responses. At the end the
accepted meter events per customer must equal the client's own count of 2xx responses.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections import Counter

import pytest

from cli.main import main as cli
from devkit.seed import seed_prices
from devkit.stack import wait_for
from tests.e2e.conftest import Edge, fetch, request, running_edge
from tests.support import TEST_TIERS
from tollway import schema
from tollway.redis_client import connect_sync
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.e2e
LOAD_TIER = """
[tiers.load]
requests_per_second = 100000.0
burst = 100000
monthly_quota = 0
over_quota = "bill"
"""
CUSTOMERS = ["cus_chaos_a", "cus_chaos_b", "cus_chaos_c"]
REQUESTS_PER_KEY = 300
KILLS = 6
FAULTS = [
    {"status": 429, "retry_after": 1, "times": 3},
    {"status": 500, "times": 3},
    {"kind": "lost", "times": 3},
    {"kind": "reset", "times": 2},
]
PATHS = {"v1": "/v1/billing/meter_events", "stream": "/v2/billing/meter_event_stream"}


def drained(edge: Edge, customers: list[str]) -> bool:
    """Metering has moved every request counted for ``customers`` (whose accounts are the
    customers themselves here) on to Stripe: nothing in their usage or outboxes, nothing
    open or pending in their ledgers."""
    with connect_sync(edge.stack.effective_redis_url) as r:
        for c in customers:
            if any(f[:1].isdigit() for f in r.hkeys(schema.usage(c))) or r.hlen(schema.outbox(c)):
                return False
            if r.hlen(schema.ledger(c, "open")) or r.hlen(schema.ledger(c, "pending")):
                return False
    return True


def counter(edge: Edge, name: str) -> int:
    """One of authz's counters, from its metrics (0 if it has none)."""
    m = re.search(rf"^{name} ([\d.e+]+)$", edge.authz_metrics(), re.M)
    return int(float(m.group(1))) if m else 0


def billed(edge) -> Counter[str]:
    events = json.loads(fetch(f"{edge.stack.standin_url}/_standin/meter_events")[1])["data"]
    out: Counter[str] = Counter()
    for e in events:
        out[e["payload"]["stripe_customer_id"]] += int(e["payload"]["value"])
    return out


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["v1", "stream"])
def test_billing_equals_2xx_through_kills_and_stripe_faults(tmp_path, mode):
    """SIGKILL the daemon 6 times and inject every Stripe fault: every 2xx is billed, once,
    per customer; billed - 2xx is at most the checks whose reply authz lost (Redis ran them,
    the reply came after authz's store timeout: README's failure table promises no more)."""
    env = {"TOLLWAY_USAGE_WINDOW_S": "1", "TOLLWAY_METERING_INTERVAL": "0.3",
           "TOLLWAY_METERING_CLOSE_SLACK_S": "0", "TOLLWAY_METERING_LOG_GRACE_S": "1",
           "TOLLWAY_METERING_ATTEMPTS": "3",
           "TOLLWAY_METERING_SEND_LOCK_S": "2", "TOLLWAY_METERING_SINK": mode}  # fmt: skip
    with running_edge(tmp_path, TEST_TIERS + LOAD_TIER, env=env) as edge:
        asyncio.run(
            seed_prices(edge.stack.standin_url, parse_tiers(edge.stack.tiers.read_text(), "t"))
        )
        keys = [(c, edge.issue("load", customer=c)[0]) for c in CUSTOMERS for _ in range(2)]
        ok: Counter[str] = Counter()
        lock = threading.Lock()

        def drive(customer: str, key: str) -> None:
            for _ in range(REQUESTS_PER_KEY):
                r = request(edge.stack.ports.envoy, "/v1/things", {"x-api-key": key})
                if 200 <= r.status < 300:
                    with lock:
                        ok[customer] += 1

        threads = [threading.Thread(target=drive, args=k) for k in keys]
        for t in threads:
            t.start()
        rng = random.Random(7)
        faults = iter(FAULTS)
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 0.6))
            edge.stack.kill("metering")
            fault = next(faults, None)
            if fault is not None:
                fault = {**fault, "path": PATHS[mode]}
                assert fetch(f"{edge.stack.standin_url}/_standin/faults", json.dumps(fault).encode(),
                             {"content-type": "application/json"})[0] == 200  # fmt: skip
            edge.stack.start("metering")
        for t in threads:
            t.join(120)
        # The load tier refuses nothing, but a starved 2-core CI machine (three cluster nodes,
        # Envoy, two services and the load) may see a rare 100 ms store timeout: a 503 that
        # Redis may still have counted (a reply lost: tollway_authz_store_replies_lost_total),
        # the only excess billing is allowed.
        assert sum(ok.values()) >= 0.99 * len(keys) * REQUESTS_PER_KEY, dict(ok)

        lost = counter(edge, "tollway_authz_store_replies_lost_total")
        wait_for(lambda: drained(edge, CUSTOMERS) and billed(edge) >= ok, "billed", 40)
        got = billed(edge)
        tail = [line for line in edge.logs if line.startswith("metering")][-15:]
        assert got >= ok, (dict(got), dict(ok), tail)  # no 2xx left unbilled
        assert got.total() - ok.total() <= lost, (dict(got), dict(ok), lost, tail)
        time.sleep(2)  # a few more drain passes: nothing more may arrive
        assert billed(edge) == got

        status, metrics = fetch(f"http://127.0.0.1:{edge.stack.ports.metering}/metrics")
        assert status == 200
        for name in ("tollway_metering_pending_windows", "tollway_metering_oldest_pending_seconds",
                     "tollway_metering_events_sent_total", "tollway_metering_retries_total",
                     "tollway_metering_dead_letters_total"):  # fmt: skip
            assert name in metrics.decode(), name
        assert fetch(f"http://127.0.0.1:{edge.stack.ports.metering}/healthz")[0] == 200

        deliveries = json.loads(fetch(f"{edge.stack.standin_url}/_standin/meter_events")[1])["data"]
        assert len({e["identifier"] for e in deliveries}) == len(deliveries)
        for customer in CUSTOMERS:
            code = cli(["reconcile", "--customer", customer, "--since", "1970-01-01",
                        "--redis-url", edge.stack.effective_redis_url, "--tiers", str(edge.stack.tiers),
                        "--stripe-api-base", edge.stack.standin_url])  # fmt: skip
            assert code == 0, f"reconcile found drift for {customer}"
