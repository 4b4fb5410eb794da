"""The management API at the Envoy edge: real Envoy, two authz workers, the API process and
Redis (either mode), driven through the Python client. A key made through the API passes
Envoy with its external id upstream; holding its account through the API is a 402 on every
worker within a second; verify answers and counts as a request through Envoy does; the audit
log names each step's actor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Edge, running_edge
from tests.support import TEST_TIERS
from tollway.api_tokens import SCOPES, ApiTokens
from tollway.audit import AuditLog
from tollway.keys import KeyHasher
from tollway.redis_client import connect
from tollway_client import Client

pytestmark = pytest.mark.e2e
# Roomy buckets, so that the test's own polling is never what gets limited.
TIERS = TEST_TIERS.replace(
    "requests_per_second = 50.0\nburst = 60", "requests_per_second = 900.0\nburst = 900"
)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    assert TIERS.count("burst = 900") == 1
    with running_edge(tmp_path_factory.mktemp("api"), TIERS, workers=2, api=True) as e:
        yield e


def client(edge: Edge) -> tuple[Client, str]:
    """A client with a token of every scope (verifying on the API's verify port), and the
    token's id."""

    async def make() -> tuple[str, str]:
        redis = connect(edge.stack.effective_redis_url)
        try:
            tokens = ApiTokens(redis, KeyHasher(), AuditLog(redis))
            plaintext, token = await tokens.create("e2e", set(SCOPES))
            return plaintext, token.id
        finally:
            await redis.aclose()

    plaintext, token_id = asyncio.run(make())
    api, verify = edge.stack.ports.api, edge.stack.ports.api_verify  # verify on its own port
    return Client(
        f"http://127.0.0.1:{api}", plaintext, verify_url=f"http://127.0.0.1:{verify}"
    ), token_id


def until(edge: Edge, key: str, status: int, what: str) -> None:
    """Poll the edge until it answers ``status``, within a second; then ten more requests,
    spread over both authz workers, must agree."""
    start = time.monotonic()
    while (r := edge.get("/v1/things", key)).status != status:
        assert time.monotonic() - start < 1.0, f"{what}: still {r.status} {r.body[:200]!r}"
        time.sleep(0.02)
    statuses = [edge.get("/v1/things", key).status for _ in range(10)]
    assert statuses == [status] * 10, f"{what}: flapped: {statuses}"


def test_a_key_made_through_the_api_is_held_and_released_at_the_edge(edge):
    api, token_id = client(edge)
    # With an Idempotency-Key: the answer kept for it holds the key, sealed (the stack's
    # scan of Redis for plaintext keys, at its end, would find it otherwise).
    made = api.create_key(tier="business", customer="cus_api_e2e", external_id="user-42",
                          idempotency_key="e2e-create")  # fmt: skip
    edge.issued.append(made.key)
    r = edge.get("/v1/things", made.key)
    assert r.status == 200, r.body
    assert r.upstream_saw("x-tollway-external-id") == ["user-42"]
    assert r.upstream_saw("x-tollway-key-id") == [made.id]
    # A client's own external id never reaches the upstream.
    other = api.create_key(tier="business", customer="cus_api_e2e_2")
    edge.issued.append(other.key)
    r = edge.get("/v1/things", other.key, headers={"x-tollway-external-id": "admin"})
    assert r.status == 200 and r.upstream_saw("x-tollway-external-id") == []

    assert api.suspend_account(made.account).held
    until(edge, made.key, 402, "account suspended through the API")
    assert api.verify_key(made.key).code == "payment_required"  # verify agrees
    assert not api.resume_account(made.account).held
    until(edge, made.key, 200, "account resumed through the API")

    actions = [(e.actor, e.action) for e in api.list_audit(target=f"account:{made.account}").data]
    assert actions == [(f"token:{token_id}", "resumed"), (f"token:{token_id}", "suspended")]
    created = api.list_audit(target=f"key:{made.id}").data
    assert [(e.actor, e.action) for e in created] == [(f"token:{token_id}", "created")]


def test_verify_gives_envoys_answer_and_counts_the_same(edge):
    api, _ = client(edge)
    made = api.create_key(tier="business", customer="cus_verify_e2e")
    edge.issued.append(made.key)
    before = api.get_account(made.account).quota_used
    through_envoy = edge.get("/v1/things", made.key)
    assert through_envoy.status == 200
    verified = api.verify_key(made.key)
    assert verified.valid and verified.code == "ok" and verified.key_id == made.id
    assert verified.tier == through_envoy.upstream_saw("x-tollway-tier")[0] == "business"
    assert api.get_account(made.account).quota_used == before + 2  # one each, counted alike
    # A denial carries the code Envoy's JSON denial carries.
    plain = api.create_key(tier="resilient", customer="cus_verify_e2e_2")  # no features
    edge.issued.append(plain.key)
    denied = edge.get("/v1/analytics", plain.key)
    feature = api.verify_key(plain.key, feature="analytics")
    assert denied.status == 403 and feature.code == denied.json()["error"]["code"]
    api.revoke_key(made.id)
    assert api.verify_key(made.key).code == "key_revoked"
    until(edge, made.key, 401, "revoked through the API")
