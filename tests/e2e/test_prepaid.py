"""Prepaid credits through the real Envoy, authz, access-log receiver and Redis (both authz
modes and both Redis modes, by `make test`): 402 credits_exhausted with the balance in a
header until the account has credits; 64 clients at once spend exactly the balance; a 5xx the
tier does not bill gives its credits back; units the upstream reports are charged after the
response, taking the balance below zero by at most that response's amount, and the next
request is refused."""

from __future__ import annotations

import contextlib
import io
import json
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cli.main import main as cli
from tests.e2e.conftest import Edge, running_edge
from tollway import schema

pytestmark = pytest.mark.e2e

TIERS = """
[tiers.payg]
requests_per_second = 10000.0
burst = 10000
monthly_quota = 0
over_quota = "block"
prepaid = true
credits_per_request = 1
credits_per_unit = 1
"""
HEADER = "x-tollway-credits-remaining"


def grant(edge: Edge, account: str, credits: int) -> None:
    """`tollway credits grant`, as an operator would."""
    url = edge.stack.effective_redis_url
    argv = ["credits", "grant", account, str(credits), "--reason", "e2e", "--redis-url", url]
    assert cli(argv) == 0


def balance(edge: Edge, account: str) -> int:
    return int(edge.redis.hget(schema.account_state(account), "credits") or 0)


def until_balance(edge: Edge, account: str, want: int, timeout_s: float = 15.0) -> None:
    """The access log's entries arrive after the responses (a 0.5 s flush): wait for them."""
    deadline = time.monotonic() + timeout_s
    while balance(edge, account) != want:
        assert time.monotonic() < deadline, (balance(edge, account), want)
        time.sleep(0.1)


@pytest.mark.timeout(180)
def test_credits_through_envoy(tmp_path: Path) -> None:
    with running_edge(tmp_path, TIERS) as edge:
        key, key_id = edge.issue("payg")
        account = edge.accounts[key_id]

        # No credits yet: 402, the balance in a header, nothing reaches the upstream.
        r = edge.get("/v1/things", key)
        assert r.status == 402 and r.json()["error"]["code"] == "credits_exhausted"
        assert r.headers[HEADER] == "0"

        # 64 clients at once against 200 credits: exactly 200 requests pass.
        grant(edge, account, 200)

        def client(_: int) -> list[int]:
            return [edge.get("/v1/things", key).status for _ in range(5)]

        with ThreadPoolExecutor(64) as pool:
            statuses = Counter(s for batch in pool.map(client, range(64)) for s in batch)
        assert statuses == {200: 200, 402: 120}, statuses
        assert balance(edge, account) == 0
        until_balance(edge, account, 0)  # and the access log changes nothing of it

        # A 503 from the upstream is not billed (the default bill_statuses): its credit
        # comes back, once, when its access-log entry arrives.
        grant(edge, account, 10)
        r = edge.get("/status/503", key)
        assert r.status == 503 and r.headers[HEADER] == "9"
        until_balance(edge, account, 10)

        # Reported units: 7 tokens cost 7 credits, after the response.
        r = edge.get("/usage/7", key)
        assert r.status == 200 and r.headers[HEADER] == "9"
        until_balance(edge, account, 2)
        # One response may take the balance below zero, by its own amount at most...
        assert edge.get("/usage/50", key).status == 200
        until_balance(edge, account, 1 - 50)
        # ...and the next request is refused, at that balance.
        r = edge.get("/v1/things", key)
        assert (r.status, r.headers[HEADER]) == (402, "-49")

        # The ledger says where every credit went, and sums to the balance.
        out = json.loads(_show(edge, account))
        assert (out["balance"], out["ledger_sum"]) == (-49, -49)
        kinds = {e["kind"] for e in out["ledger"]}
        assert kinds == {"grant", "requests", "returned", "units"}
        assert edge.usage(key_id) == 0  # nothing went to the usage a meter drains


def _show(edge: Edge, account: str) -> str:
    buf = io.StringIO()
    url = edge.stack.effective_redis_url
    with contextlib.redirect_stdout(buf):
        assert cli(["credits", "show", account, "--json", "--redis-url", url]) == 0
    return buf.getvalue()


LEASE_TIERS = """
[tiers.payg_lease]
requests_per_second = 10000.0
burst = 10000
monthly_quota = 0
over_quota = "block"
prepaid = true
limiter = "lease"
lease_tokens = 10
"""
WORKERS = 2


@pytest.mark.timeout(180)
def test_credits_in_lease_mode_under_load(tmp_path: Path) -> None:
    """Lease mode, 2 authz workers, 64 clients at once against 200 credits: the balance is never
    overdrawn (a lease's credits are reserved when it is taken); once the leases settle, every
    credit not spent is back; and at most what two leases hold (2 leases of 10 credits) went unserved
    while it sat in a lease: at least 180 requests pass."""
    env = {"TOLLWAY_LEASE_TTL_MS": "500"}
    with running_edge(tmp_path, LEASE_TIERS, workers=WORKERS, env=env) as edge:
        key, key_id = edge.issue("payg_lease")
        account = edge.accounts[key_id]
        grant(edge, account, 200)
        lowest = [200]

        def client(_: int) -> list[int]:
            out = []
            for _ in range(5):
                out.append(edge.get("/v1/things", key).status)
                lowest[0] = min(lowest[0], balance(edge, account))
            return out

        with ThreadPoolExecutor(64) as pool:
            statuses = Counter(s for batch in pool.map(client, range(64)) for s in batch)
        passed = statuses[200]
        assert set(statuses) <= {200, 402} and 200 - WORKERS * 10 <= passed <= 200, statuses
        assert lowest[0] >= 0  # never overdrawn, as seen between requests
        until_balance(edge, account, 200 - passed)  # the leases settled: the rest came back
        out = json.loads(_show(edge, account))
        assert out["balance"] == out["ledger_sum"] == 200 - passed


@pytest.mark.timeout(240)
def test_every_credit_is_accounted_for_while_the_receivers_restart(tmp_path: Path) -> None:
    """Clients call an upstream that fails a fifth of the calls, resets some and reports token
    amounts, while each of two access-log receivers restarts in turn: once the log is in, the
    balance is exactly the grant less a credit per billed response and a credit per token it
    reported (nothing refunded twice, nothing charged twice, nothing lost)."""
    from tests.e2e.test_served import pick

    with running_edge(tmp_path, TIERS, receivers=2) as edge:
        key, key_id = edge.issue("payg")
        account = edge.accounts[key_id]
        grant(edge, account, 10**9)
        spent = [0]
        lock = threading.Lock()
        done = threading.Event()

        def drive(seed: int) -> None:
            rng = random.Random(seed)
            for n in range(2000):
                if n >= 150 and done.is_set():
                    break
                time.sleep(0.01)
                path, tokens = pick(rng)
                r = edge.get(path, key)
                if r.status < 500:  # billed (the default bill_statuses): a credit and its tokens
                    with lock:
                        spent[0] += 1 + tokens

        threads = [threading.Thread(target=drive, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for name in ("receiver", "receiver-1"):
            time.sleep(0.5)
            edge.stack.stop(name)
            edge.stack.start(name)
            assert all(t.is_alive() for t in threads), "the restart came after the traffic"
        done.set()
        for t in threads:
            t.join(120)
        until_balance(edge, account, 10**9 - spent[0], timeout_s=30)
        time.sleep(2)  # a late double refund or charge would show now
        assert balance(edge, account) == 10**9 - spent[0]
        out = json.loads(_show(edge, account))
        assert out["ledger_sum"] == out["balance"]
