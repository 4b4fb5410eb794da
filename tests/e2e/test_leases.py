"""Lease mode through the real Envoy with 2 authz workers: few Redis calls, revocation seen
within 1 s by both workers, and usage equal to the requests let through once leases settle."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import running_edge

pytestmark = pytest.mark.e2e

TIERS = """
[tiers.leased]
requests_per_second = 1000.0
burst = 1000
monthly_quota = 0
over_quota = "bill"
limiter = "lease"
lease_tokens = 20
"""


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
