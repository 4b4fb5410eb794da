"""Lease mode through the real Envoy with 2 authz workers: few Redis calls, revocation seen
within 1 s by both workers, and usage equal to the requests let through once leases settle."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import running_edge
from tests.support import LEASED_TIER

pytestmark = pytest.mark.e2e

TIERS = LEASED_TIER


def test_lease_tier_through_envoy(tmp_path):
    with running_edge(tmp_path, TIERS, workers=2, env={"TOLLWAY_LEASE_TTL_MS": "500"}) as edge:
        key, key_id = edge.issue("leased")
        before = edge.command_calls("evalsha")
        statuses = [edge.get("/v1/things", key).status for _ in range(200)]
        assert statuses == [200] * 200
        calls = edge.command_calls("evalsha") - before
        # Each worker's call lets its request through and leases 20 more; the sweeper settles
        # expired leases (500 ms). Exact mode would have made 200 calls.
        assert calls <= 60, calls

        edge.revoke(key_id)
        revoked_at = time.monotonic()
        while time.monotonic() - revoked_at < 1.0:
            statuses.append(edge.get("/v1/things", key).status)
            if statuses[-1] == 401:
                break
            time.sleep(0.02)
        assert statuses[-1] == 401, "revocation not seen within 1 s"
        assert [edge.get("/v1/things", key).status for _ in range(10)] == [401] * 10

        # Every 200, including any served from a lease before the revocation reached it, is
        # counted once its lease settles (TTL 500 ms, sweep every 125 ms); nothing else is.
        ok = statuses.count(200)
        deadline = time.monotonic() + 3.0
        while edge.usage(key_id) < ok and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a late double count would show now
        assert edge.usage(key_id) == ok


def test_an_account_s_own_limits_reach_lease_holders_within_1s(tmp_path):
    """`tollway accounts set-limits --burst 5` on a lease-mode account: both workers close the
    account's leases (the key-change channel), and within 1 s answers quote burst 5."""
    from cli.main import main as cli

    with running_edge(tmp_path, TIERS, workers=2, env={"TOLLWAY_LEASE_TTL_MS": "5000"}) as edge:
        customer = f"cus_lease_limits_{time.time_ns()}"
        key, _ = edge.issue("leased", customer=customer)
        first = [edge.get("/v1/things", key) for _ in range(20)]  # leases taken, 5 s TTL
        assert {r.headers["ratelimit-limit"] for r in first} == {"1000"}
        url = edge.stack.effective_redis_url
        assert cli(["accounts", "set-limits", customer, "--burst", "5", "--redis-url", url]) == 0
        changed_at = time.monotonic()
        seen = ""
        while time.monotonic() - changed_at < 1.0:
            seen = edge.get("/v1/things", key).headers.get("ratelimit-limit", "")
            if seen == "5":
                break
            time.sleep(0.02)
        assert seen == "5", "the account's new burst was not applied within 1 s"


def test_a_suspended_account_is_402_at_envoy_and_rotating_gets_no_key_around_it(tmp_path, capsys):
    """`tollway accounts suspend` on a lease-mode account with two keys: both are 402 through
    Envoy within 1 s (both workers close the leases); rotating a key is refused. After
    `accounts resume`, a key the operator suspended and then rotated with no overlap: its
    successor is 402 too, the old one 401, the other key 200."""
    from cli.main import main as cli

    with running_edge(tmp_path, TIERS, workers=2, env={"TOLLWAY_LEASE_TTL_MS": "5000"}) as edge:
        customer = f"cus_hold_{time.time_ns()}"
        (a, a_id), (b, _) = [edge.issue("leased", customer=customer) for _ in range(2)]
        assert [edge.get("/v1/things", k).status for k in (a, b) * 10] == [200] * 20
        url = ["--redis-url", edge.stack.effective_redis_url]
        assert cli(["accounts", "suspend", customer, *url]) == 0
        held_at = time.monotonic()
        codes: list[int] = []
        while time.monotonic() - held_at < 1.0:
            codes = [edge.get("/v1/things", k).status for k in (a, b)]
            if codes == [402, 402]:
                break
            time.sleep(0.02)
        assert codes == [402, 402], "the account's suspension was not seen within 1 s"
        assert cli(["keys", "rotate", a_id, "--overlap", "0", *url]) == 1
        assert cli(["accounts", "resume", customer, *url]) == 0
        assert cli(["keys", "suspend", a_id, *url]) == 0
        capsys.readouterr()
        assert cli(["keys", "rotate", a_id, "--overlap", "0", *url]) == 0
        successor = capsys.readouterr().out.strip()
        assert successor.startswith("tw_live_")
        codes = []
        for _ in range(50):  # the leases of a and b were closed; give pub/sub up to 1 s
            codes = [edge.get("/v1/things", k).status for k in (successor, a, b)]
            if codes == [402, 401, 200]:
                break
            time.sleep(0.02)
        assert codes == [402, 401, 200]
