"""Faults through the real Envoy: authz down, Redis down per tier, graceful stop, tier reload."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from devkit.stack import wait_for
from tests.e2e.conftest import Edge, running_edge
from tests.support import TEST_TIERS

pytestmark = [pytest.mark.e2e, pytest.mark.single_redis]  # stops and restarts its redis-server


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """A stack of this module's own: these tests stop and restart its processes."""
    with running_edge(tmp_path_factory.mktemp("faults")) as e:
        yield e


def test_authz_down_is_503_and_recovers(edge):
    """With authz stopped, Envoy fails closed with 503; after a restart requests pass again."""
    key, _ = edge.issue("pro")
    assert edge.get("/v1/things", key).status == 200
    assert edge.stack.stop("authz") == 0  # SIGTERM: a graceful, zero-status exit
    r = edge.get("/v1/things", key)
    assert r.status == 503
    edge.stack.start("authz")
    wait_for(lambda: edge.get("/v1/things", key).status == 200, "authz back", 10)


# A 503 denial's code, as the client sees it. In HTTP mode Envoy turns any 5xx from authz into
# its own status_on_error reply (envoyproxy/envoy#14001); envoy-http.yaml gives that reply the
# JSON error shape with a generic code.
UNAVAILABLE = {"grpc": "store_unavailable", "http": "service_unavailable"}


def test_redis_down_denies_or_allows_per_tier_and_usage_is_written_back(edge, authz_mode):
    """Redis stopped: deny tiers get 503 quickly, a known allow-tier key keeps working and its
    usage is written back once Redis returns."""
    deny_key, _ = edge.issue("pro")
    allow_key, allow_id = edge.issue("resilient")
    unseen_key, _ = edge.issue("resilient")
    assert edge.get("/v1/things", deny_key).status == 200
    assert edge.get("/v1/things", allow_key).status == 200

    edge.redis.close()
    edge.stack.stop("redis")  # SIGTERM: Redis saves its RDB, so the restart keeps the keys
    try:
        start = time.monotonic()
        r = edge.get("/v1/things", deny_key)
        assert r.status == 503 and r.json()["error"]["code"] == UNAVAILABLE[authz_mode]
        assert time.monotonic() - start < 1.0  # the store timeout, not Envoy's, decided
        assert edge.get("/v1/things", unseen_key).status == 503  # never seen: cannot be trusted
        degraded = [edge.get("/v1/things", allow_key) for _ in range(5)]
        assert [r.status for r in degraded] == [200] * 5
        assert all(r.upstream_saw("x-tollway-degraded") == ["store_unavailable"] for r in degraded)
        assert degraded[0].headers["x-tollway-degraded"] == "store_unavailable"
    finally:
        edge.stack.start("redis")
    # 1 request before the outage + 5 during it: all six must be counted once Redis is back.
    wait_for(lambda: edge.usage(allow_id) == 6, "usage written back", 10)
    wait_for(lambda: edge.get("/v1/things", deny_key).status == 200, "redis back", 10)
    assert edge.get("/v1/things", allow_key).headers.get("x-tollway-degraded") is None


def test_sighup_reloads_tiers_and_a_bad_file_keeps_the_old_table(edge):
    """SIGHUP picks up a changed tier table; an invalid one is rejected and the old one stays."""
    tiers = edge.stack.tiers
    key, _ = edge.issue("pro")
    assert edge.get("/v1/things", key).headers["ratelimit-limit"] == "20"
    tiers.write_text(TEST_TIERS.replace("burst = 20", "burst = 7"))
    edge.stack.signal("authz", signal.SIGHUP)
    wait_for(lambda: edge.get("/v1/things", key).headers["ratelimit-limit"] == "7", "reload", 10)

    tiers.write_text(TEST_TIERS.replace("burst = 20", "burst = -1"))
    edge.stack.signal("authz", signal.SIGHUP)
    wait_for(lambda: any("tiers_reload_rejected" in line for line in edge.logs), "rejection", 10)
    assert any('field \\"burst\\": must be an integer >= 1' in line for line in edge.logs)
    assert edge.get("/v1/things", key).headers["ratelimit-limit"] == "7"
    tiers.write_text(TEST_TIERS)
