"""Limits, round two, through the real Envoy, on the shipped tier table's free tier (1,000
requests a day, 2 at a time, /v1/reports at 1 a second): never more than 2 of an account's
requests reach the upstream at once, the others get 429 concurrency_exceeded; a slot comes
back when Envoy's access log reports its request ended, long before its bound, and after the
bound when no entry comes (the receiver stopped); /v1/reports drains only its own bucket, and
its headers describe that bucket. Both authz modes and both Redis modes (make test)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.stack import wait_for
from tests.e2e.conftest import Edge, Response, running_edge
from tollway import schema

pytestmark = pytest.mark.e2e

SHIPPED = Path(__file__).parents[2] / "tollway" / "data" / "tiers.toml"
SLOT_S = 6  # TOLLWAY_AUTHZ_SLOT_S: how long a slot no entry frees is held
ENV = {"TOLLWAY_AUTHZ_SLOT_S": str(SLOT_S)}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with running_edge(tmp_path_factory.mktemp("limits"), SHIPPED.read_text(), env=ENV) as e:
        yield e


def error_code(r: Response) -> str:
    return str(r.json()["error"]["code"])


def upstream_held(edge: Edge, reset: bool = False) -> dict[str, int]:
    """The demo upstream's count of /delay requests held now, and the most at once."""
    url = f"http://127.0.0.1:{edge.stack.ports.upstream}/inflight" + ("?reset=1" if reset else "")
    with urllib.request.urlopen(url, timeout=5) as r:
        return dict(json.loads(r.read()))


def at_once(edge: Edge, key: str, path: str, n: int) -> list[Response]:
    """``n`` requests sent together, each on its own connection."""
    start = threading.Barrier(n)
    out: list[Response | None] = [None] * n

    def one(i: int) -> None:
        start.wait()
        out[i] = edge.get(path, key)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r is not None for r in out), "a request did not finish"
    return [r for r in out if r is not None]


def slots(edge: Edge, key_id: str) -> list[tuple[str, float]]:
    """The account's slots in Redis: (slot id, when it lapses, Redis ms)."""
    name = schema.in_flight(edge.accounts[key_id])
    return [(str(s), float(end)) for s, end in edge.redis.zrange(name, 0, -1, withscores=True)]


def now_ms() -> float:
    """The slots' clock: Redis's, which on this one machine is this process's wall clock."""
    return time.time() * 1000


def test_never_more_than_max_concurrent_reach_the_upstream(edge):
    """10 clients at once, each held 2.5 s by the upstream, on a free-tier key (2 at a time):
    the upstream never holds more than 2; every other answer is 429 concurrency_exceeded
    with retry-after, counted nowhere."""
    key, key_id = edge.issue("free")
    upstream_held(edge, reset=True)
    rs = at_once(edge, key, "/delay/2500", 10)
    served = [r for r in rs if r.status == 200]
    refused = [r for r in rs if r.status != 200]
    assert upstream_held(edge)["most"] <= 2
    assert 1 <= len(served) <= 2  # all 10 arrive within the 2.5 s the first two are held
    assert refused and all(r.status == 429 for r in refused), [r.status for r in rs]
    assert {error_code(r) for r in refused} == {"concurrency_exceeded"}
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert edge.usage(key_id) == len(served)  # the refused ones are counted nowhere


def test_a_slot_comes_back_when_envoy_s_access_log_reports_its_request_ended(edge):
    """Two requests held by the upstream take both slots; once they are answered, the
    receiver frees both on their access-log entries, before either slot's bound (so it was
    the log, not the bound), and the account's next request passes."""
    key, key_id = edge.issue("free")
    done: list[Response] = []
    threads = [
        threading.Thread(target=lambda: done.append(edge.get("/delay/1500", key))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    wait_for(lambda: len(slots(edge, key_id)) == 2, "both requests hold a slot", 10)
    lapse = min(end for _, end in slots(edge, key_id))
    for t in threads:
        t.join(30)
    assert [r.status for r in done] == [200, 200]
    wait_for(lambda: not slots(edge, key_id), "the access log frees both slots", SLOT_S)
    assert now_ms() < lapse  # freed before the bound: by the log
    assert edge.get("/v1/things", key).status == 200


def test_a_route_s_own_bucket_is_drained_alone_and_described_in_its_headers(edge):
    """/v1/reports (tollway_bucket "reports", cost 5) on the free tier's reports bucket (5
    tokens at 5 a second): one report, then 429 rate_limited with that bucket's headers; the
    default bucket (burst 5) is untouched."""
    key, _ = edge.issue("free")
    first = edge.get("/v1/reports/monthly", key)
    assert first.status == 200
    assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("5", "0")
    assert first.headers["ratelimit-policy"] == "5;w=1"  # 5 at 5 a second
    second = edge.get("/v1/reports/monthly", key)
    assert (second.status, error_code(second)) == (429, "rate_limited")
    assert (second.headers["ratelimit-limit"], second.headers["retry-after"]) == ("5", "1")
    other = edge.get("/v1/things", key)
    assert other.status == 200
    assert (other.headers["ratelimit-limit"], other.headers["ratelimit-remaining"]) == ("5", "4")


def test_a_client_cannot_choose_the_bucket_it_takes_from(edge):
    """x-tollway-bucket (and x-tollway-cost) from the client change nothing: Envoy sends authz
    the route's own terms (HTTP mode sets the headers itself; gRPC mode reads the route's
    context_extensions), so /v1/things still takes 1 token from the default bucket, and the
    reports bucket stays full."""
    key, _ = edge.issue("free")
    spoofed = edge.get("/v1/things", key, {"x-tollway-bucket": "reports", "x-tollway-cost": "5"})
    assert spoofed.status == 200
    assert spoofed.headers["ratelimit-policy"] == "5;w=5"  # the default bucket: 5 at 1/s
    assert spoofed.headers["ratelimit-remaining"] == "4"
    report = edge.get("/v1/reports/monthly", key)
    assert (report.status, report.headers["ratelimit-remaining"]) == (200, "0")  # 5 of 5 left


def test_with_the_receiver_stopped_a_slot_comes_back_after_its_bound(edge):
    """No access log: each answered request keeps its slot until TOLLWAY_AUTHZ_SLOT_S after
    its check; the account is refused meanwhile, and served again once the bound passes.
    (Last in this module: it stops the receiver, and starts it again.)"""
    key, key_id = edge.issue("free")
    edge.stack.stop("receiver")
    try:
        assert edge.get("/delay/0", key).status == 200
        assert edge.get("/delay/0", key).status == 200
        held = slots(edge, key_id)
        assert len(held) == 2  # answered, and still held: no entry frees them
        lapse = min(end for _, end in held)
        refused = edge.get("/v1/things", key)
        assert (refused.status, error_code(refused)) == (429, "concurrency_exceeded")
        wait_for(lambda: edge.get("/v1/things", key).status == 200, "a slot lapses", SLOT_S + 10)
        assert now_ms() >= lapse  # not before the bound
    finally:
        edge.stack.start("receiver")
