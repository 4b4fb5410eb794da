"""Check() called directly with CheckRequests shaped like Envoy's, over a hand-written fake store."""

from __future__ import annotations

import asyncio
import json

from envoy.service.auth.v3 import external_auth_pb2 as pb
from google.rpc import code_pb2
from prometheus_client import CollectorRegistry

from authz.check_reply import CheckReply, Code
from authz.check_store import Overloaded, ScriptCall, StoreCheck, StoreUnavailable
from authz.check_tiers import ARGS_PER_TIER, LIMITS, CheckTiers
from authz.metrics import AuthzMetrics
from authz.servicer import AuthzServicer
from authz.usage_buffer import UsageBuffer
from tests.support import TEST_TIERS, check_request
from tollway.keys import KeyHasher, generate_key
from tollway.tiers import parse_tiers


class FakeStore:
    """A CheckStore: answers from a scripted reply, or fails like a dead or slow store."""

    def __init__(self) -> None:
        self.breaker_open = False
        self.calls: list[tuple[str, str, int, tuple[str, ...]]] = []
        self.modes: list[object] = []
        self.tiers: dict[str, str] = {}  # key id -> the tier last answered
        self.outcome = CheckReply(Code.OK, "free", "cus_1", remaining=4, wait_ms=1000)
        self.down = False
        self.overloaded = False

    async def check(self, request: StoreCheck):
        self.calls.append((request.key_id, request.digest, request.cost, request.tier_args))
        self.modes.append(request.call)
        if self.down:
            raise StoreUnavailable("ConnectionError: refused")
        if self.overloaded:
            raise Overloaded("check took over 200 ms")
        self.tiers[request.key_id] = self.outcome.tier
        return self.outcome

    async def write_back(self, buffer):
        return None

    def usage_source(self, key_id: str) -> str:
        return "sub_1"  # the key's account

    def tier_of(self, key_id: str) -> str:
        return self.tiers.get(key_id, "")

    def external_id_of(self, key_id: str) -> str:
        return ""

    def own_id(self, key_id: str) -> str:
        return key_id


def stall(fake: FakeStore) -> asyncio.Event:
    """Hold ``fake``'s checks until the returned event is set."""
    release = asyncio.Event()
    answer = fake.check

    async def slow(*args):
        await release.wait()
        return await answer(*args)

    fake.check = slow  # type: ignore[method-assign]
    return release


def service(store: FakeStore) -> AuthzServicer:
    return AuthzServicer(
        CheckTiers(parse_tiers(TEST_TIERS, "test")),
        store,
        KeyHasher(),
        UsageBuffer(60),
        AuthzMetrics(CollectorRegistry()),
    )


async def call(svc: AuthzServicer, request) -> pb.CheckResponse:
    """Check() as Envoy sees it: the bytes it answers, parsed."""
    return pb.CheckResponse.FromString(await svc.Check(request, None))


def headers_of(options) -> dict[str, str]:
    return {o.header.key: o.header.value for o in options}


async def test_ok_response_sets_headers_strips_key_and_metadata():
    """An allowed check overwrites x-tollway-* upstream, strips the key, and adds metadata."""
    fake = FakeStore()
    key = generate_key()
    resp = await call(service(fake), check_request({"x-api-key": key}))
    assert resp.status.code == code_pb2.OK
    ok = resp.ok_response
    assert headers_of(ok.headers) == {
        "x-tollway-customer": "cus_1",
        "x-tollway-tier": "free",
        "x-tollway-key-id": KeyHasher.key_id(KeyHasher().digest(key)),
    }
    assert all(o.append_action == o.OVERWRITE_IF_EXISTS_OR_ADD for o in ok.headers)
    assert list(ok.headers_to_remove) == [
        "x-api-key",
        "x-tollway-degraded",
        "x-tollway-dry-run",
        "x-tollway-external-id",
    ]
    assert headers_of(ok.response_headers_to_add)["ratelimit-remaining"] == "4"
    assert resp.dynamic_metadata["customer"] == "cus_1" and resp.dynamic_metadata["tier"] == "free"
    assert key not in str(resp)


async def test_missing_key_is_401_json_without_a_store_call():
    """No credential: 401 missing_api_key with JSON and www-authenticate; Redis untouched."""
    fake = FakeStore()
    resp = await call(service(fake), check_request())
    denied = resp.denied_response
    assert resp.status.code == code_pb2.UNAUTHENTICATED and denied.status.code == 401
    assert json.loads(denied.body)["error"]["code"] == "missing_api_key"
    h = headers_of(denied.headers)
    assert h["content-type"] == "application/json" and h["www-authenticate"].startswith("Bearer")
    assert fake.calls == []


async def test_bad_checksum_is_rejected_without_a_store_call():
    """A typo'd key is refused offline: the checksum fails before any Redis work."""
    fake = FakeStore()
    key = generate_key()
    typo = key[:20] + ("a" if key[20] != "a" else "b") + key[21:]
    resp = await call(service(fake), check_request({"x-api-key": typo}))
    assert resp.denied_response.status.code == 401
    assert json.loads(resp.denied_response.body)["error"]["code"] == "invalid_api_key"
    assert fake.calls == []


async def test_route_cost_and_feature_reach_the_store():
    """The route's cost is passed on, and each tier's ARGV says whether it has the feature."""
    fake = FakeStore()
    req = check_request(
        {"authorization": f"Bearer {generate_key()}"},
        extensions={"tollway_cost": "5", "tollway_feature": "reports"},
    )
    await call(service(fake), req)
    (_, _, cost, tier_args) = fake.calls[0]
    assert cost == 5
    names = ["free", "pro", "business", "capped", "resilient", "shadow", "big"]
    assert all(len(tier_args(name)) == ARGS_PER_TIER + 1 + LIMITS for name in names)
    # for an account's override
    assert {tier_args(name)[ARGS_PER_TIER] for name in names} == {"reports"}
    has_feature = {name: tier_args(name)[6] for name in names}
    # Not in the table: the name and empty values; check.lua says NO_TIER.
    assert tier_args("platinum") == (
        "platinum", "", "", "", "", "", "", "", "reports", "0", "0", "", "0", "0"
    )  # fmt: skip
    assert has_feature == {
        "free": "0", "pro": "1", "business": "1", "capped": "0", "resilient": "0", "shadow": "0",
        "big": "0",
    }  # fmt: skip


async def test_bad_route_cost_is_503_route_misconfigured():
    """An unusable tollway_cost in the Envoy config fails closed with a clear code."""
    fake = FakeStore()
    req = check_request({"x-api-key": generate_key()}, extensions={"tollway_cost": "lots"})
    resp = await call(service(fake), req)
    assert resp.denied_response.status.code == 503
    assert json.loads(resp.denied_response.body)["error"]["code"] == "route_misconfigured"


async def test_store_down_allows_known_key_on_allow_tier_and_buffers_usage():
    """After one good check, a store outage lets an allow-tier key through and counts it locally."""
    fake = FakeStore()
    fake.outcome = CheckReply(Code.OK, "resilient", "cus_9", remaining=50, wait_ms=0)
    svc = service(fake)
    key = generate_key()
    await call(svc, check_request({"x-api-key": key}))
    fake.down = True
    resp = await call(svc, check_request({"x-api-key": key}))
    assert resp.HasField("ok_response")
    assert headers_of(resp.ok_response.headers)["x-tollway-degraded"] == "store_unavailable"
    assert len(svc.buffer) == 1
    assert {source for source, _ in svc.buffer._counts} == {"sub_1"}  # under its account


async def test_store_down_denies_unseen_keys_and_deny_tiers():
    """A key never seen, or on a deny tier, gets 503 store_unavailable during an outage."""
    fake = FakeStore()
    svc = service(fake)
    seen = generate_key()
    await call(svc, check_request({"x-api-key": seen}))  # tier free: on_store_error=deny
    fake.down = True
    for key in (seen, generate_key()):
        resp = await call(svc, check_request({"x-api-key": key}))
        assert resp.denied_response.status.code == 503
        assert json.loads(resp.denied_response.body)["error"]["code"] == "store_unavailable"
    assert len(svc.buffer) == 0


async def test_overload_is_503_overloaded_even_on_an_allow_tier():
    """A missed deadline sheds load: 503 overloaded, never a degraded allow, nothing buffered."""
    fake = FakeStore()
    fake.outcome = CheckReply(Code.OK, "resilient", "cus_9")
    svc = service(fake)
    key = generate_key()
    await call(svc, check_request({"x-api-key": key}))
    fake.overloaded = True
    resp = await call(svc, check_request({"x-api-key": key}))
    assert resp.denied_response.status.code == 503
    assert json.loads(resp.denied_response.body)["error"]["code"] == "overloaded"
    assert len(svc.buffer) == 0


async def test_revoked_key_is_forgotten_for_degraded_mode():
    """Once the store says revoked, an outage cannot let the key back in."""
    fake = FakeStore()
    fake.outcome = CheckReply(Code.OK, "resilient", "cus_9")
    svc = service(fake)
    key = generate_key()
    await call(svc, check_request({"x-api-key": key}))
    fake.outcome = CheckReply(Code.REVOKED, "resilient", "cus_9")
    await call(svc, check_request({"x-api-key": key}))
    fake.down = True
    resp = await call(svc, check_request({"x-api-key": key}))
    assert resp.denied_response.status.code == 503


async def test_decisions_are_counted_by_reason():
    """The decisions metric is labelled with the same reason value as the JSON body."""
    fake = FakeStore()
    svc = service(fake)
    await call(svc, check_request())
    await call(svc, check_request({"x-api-key": generate_key()}))
    reg = CollectorRegistry()
    reg.register(svc.metrics.hot)
    value = reg.get_sample_value
    assert value("tollway_authz_decisions_total", {"reason": "missing_api_key"}) == 1
    assert value("tollway_authz_decisions_total", {"reason": "ok"}) == 1
    assert value("tollway_authz_check_seconds_count") == 2


async def test_a_flood_of_one_unknown_key_reaches_the_store_once():
    """Redis's "unknown key" is remembered: repeating the key costs no store call; a key with a
    bad checksum never reaches the store at all."""
    fake = FakeStore()
    fake.outcome = CheckReply(Code.UNKNOWN_KEY)
    svc = service(fake)
    unknown = generate_key()
    codes = [(await call(svc, check_request({"x-api-key": unknown}))).status.message
             for _ in range(100)]  # fmt: skip
    assert codes == ["invalid_api_key"] * 100
    assert len(fake.calls) == 1
    typo = unknown[:-1] + ("A" if unknown[-1] != "A" else "B")
    for _ in range(100):
        await call(svc, check_request({"x-api-key": typo}))
    assert len(fake.calls) == 1


async def test_no_lease_is_asked_for_while_key_changes_cannot_reach_leases():
    """Until the invalidation listener is subscribed (LeaseBook.accepting), checks run in exact
    mode: a lease taken then could miss a revocation."""
    fake = FakeStore()
    svc = service(fake)
    svc.leases.accepting = False
    await call(svc, check_request({"x-api-key": generate_key()}))
    svc.leases.accepting = True
    await call(svc, check_request({"x-api-key": generate_key()}))
    assert fake.modes == [ScriptCall.CHECK, ScriptCall.LEASE]


async def test_a_grpc_check_envoy_gave_up_on_is_counted_as_unheard():
    """Envoy's timeout cancels the RPC while Redis is counting: the check still finishes, and
    an allowed one is counted in tollway_authz_answers_unheard_total."""
    import asyncio

    fake = FakeStore()
    release = stall(fake)
    svc = service(fake)
    rpc = asyncio.ensure_future(svc.Check(check_request({"x-api-key": generate_key()}), None))
    await asyncio.sleep(0.01)
    rpc.cancel()
    await asyncio.sleep(0)
    assert svc.metrics.answers_unheard._value.get() == 0
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert rpc.cancelled() and len(fake.calls) == 1
    assert svc.metrics.answers_unheard._value.get() == 1


async def test_with_a_usage_log_secret_a_counted_check_carries_its_stamp_and_an_unheard_one_is_noted():
    """The stamp rides in the CheckResponse's dynamic metadata, signed for this request id;
    a check Envoy gave up on leaves its stamp under the request id for the receiver."""
    import asyncio

    from tollway.usage_stamp import METADATA_KEY, Stamper

    fake = FakeStore()
    notes: list[tuple[str, str]] = []

    async def note_unheard(request_id: str, stamp: str) -> None:
        notes.append((request_id, stamp))

    fake.note_unheard = note_unheard  # type: ignore[attr-defined]
    svc = service(fake)
    stamper = svc.stamper = Stamper("s")
    key = generate_key()
    r = await call(svc, check_request({"x-api-key": key, "x-request-id": "rid-1"}))
    stamp = stamper.read(r.dynamic_metadata[METADATA_KEY])
    assert stamp is not None and (stamp.source, stamp.tier) == ("sub_1", "free")
    for rid in ("", "rid-1", "not a uuid!", "x" * 150):  # whatever the client sends: a stamp
        r = await call(svc, check_request({"x-api-key": key, "x-request-id": rid}))
        again = stamper.read(r.dynamic_metadata[METADATA_KEY])
        assert again is not None and again.nonce != stamp.nonce

    release = stall(fake)
    rpc = asyncio.ensure_future(
        svc.Check(check_request({"x-api-key": key, "x-request-id": "rid-2"}), None)
    )
    await asyncio.sleep(0.01)
    rpc.cancel()
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [rid for rid, _ in notes] == ["rid-2"]
    assert stamper.read(notes[0][1]) is not None


def decisions_logged(caplog) -> list[dict[str, object]]:
    return [r.fields for r in caplog.records if r.getMessage() == "decision"]  # type: ignore[attr-defined]


async def test_every_decision_line_names_its_request(caplog):
    """A denial is logged with Envoy's x-request-id; one without a usable id (none, or one
    no log should carry) gets an id of authz's own; an allowed check is not logged unless
    sampled."""
    caplog.set_level("INFO", logger="tollway.authz")
    fake = FakeStore()
    svc = service(fake)
    await call(svc, check_request({"x-request-id": "rid-7"}))  # no key: 401
    await call(svc, check_request({"x-request-id": "bad id\n{}"}))
    await call(svc, check_request({"x-api-key": generate_key(), "x-request-id": "rid-8"}))
    logged = decisions_logged(caplog)
    assert [d["reason"] for d in logged] == ["missing_api_key", "missing_api_key"]
    assert logged[0]["request_id"] == "rid-7"
    assert str(logged[1]["request_id"]).startswith("authz-")


async def test_allowed_decisions_are_logged_when_sampled(caplog):
    """log_allowed = 1: every allowed decision is logged too, with its request id."""
    caplog.set_level("INFO", logger="tollway.authz")
    svc = service(FakeStore())
    svc.log_allowed = 1.0
    await call(svc, check_request({"x-api-key": generate_key(), "x-request-id": "rid-9"}))
    assert [(d["reason"], d["request_id"]) for d in decisions_logged(caplog)] == [("ok", "rid-9")]
