"""The serialized CheckResponse: cached fragments must equal the message built the plain way."""

from __future__ import annotations

import pytest
from envoy.service.auth.v3 import external_auth_pb2 as pb

from authz import responses
from authz.check_reply import CheckReply, Code
from authz.decision import invalid_key, missing_key, on_reply, on_store_error
from authz.request import RequestInfo
from tests.support import TEST_TIERS
from tollway.tiers import parse_tiers

TABLE = parse_tiers(TEST_TIERS, "test")
REQ = RequestInfo(key="k", strip=("x-api-key",))
BEARER = RequestInfo(key="k", strip=("authorization",))


def ok(tier: str = "free", **kw) -> CheckReply:
    return CheckReply(Code.OK, tier, "cus_1", **kw)


DECISIONS = {
    "ok": on_reply(REQ, "kid1", ok(remaining=3, wait_ms=1500), TABLE.get("free")),
    "ok, other values": on_reply(REQ, "kid1", ok(remaining=0, wait_ms=5000), TABLE.get("free")),
    "ok, bearer, other key": on_reply(BEARER, "kid2", ok("pro", remaining=19), TABLE.get("pro")),
    "ok in grace": on_reply(REQ, "kid1", ok(grace_until=1_900_000_000), TABLE.get("free")),
    "ok, dry run": on_reply(REQ, "kid1", ok(would_deny=Code.RATE), TABLE.get("free")),
    "degraded": on_store_error(REQ, "kid1", "cus_1", TABLE.get("free")),
    "missing key": missing_key(),
    "invalid key": invalid_key("kid1"),
    "rate limited": on_reply(REQ, "kid1", CheckReply(Code.RATE, "free", "cus_1", wait_ms=700), TABLE.get("free")),
    "ok, usage stamp": on_reply(REQ, "kid1", ok(remaining=3, wait_ms=1500), TABLE.get("free")),
    "ok, long usage stamp": on_reply(REQ, "kid1", ok(remaining=3), TABLE.get("free")),
}  # fmt: skip
DECISIONS["ok, usage stamp"].usage_stamp = "sub_1|0123456789abcdef|free|1790000000|" + "a" * 24
DECISIONS["ok, long usage stamp"].usage_stamp = "s" * 300  # a length past one varint byte


@pytest.mark.parametrize("name", list(DECISIONS))
def test_bytes_parse_to_the_plainly_built_message(name):
    d = DECISIONS[name]
    for _ in range(2):  # the second time from the caches
        assert pb.CheckResponse.FromString(responses.build(d)) == responses.message(d)


def test_ok_headers_keep_their_order_and_are_not_merged_across_decisions():
    """Fragments append in order; a cached prefix for one key never leaks into another's."""
    a = pb.CheckResponse.FromString(responses.build(DECISIONS["ok"]))
    b = pb.CheckResponse.FromString(responses.build(DECISIONS["ok, bearer, other key"]))
    assert [h.header.key for h in a.ok_response.response_headers_to_add] == [
        "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy"]  # fmt: skip
    assert list(b.ok_response.headers_to_remove) == ["authorization", "x-tollway-degraded",
                                                     "x-tollway-dry-run", "x-tollway-external-id"]  # fmt: skip
    assert {h.header.value for h in b.ok_response.headers} >= {"kid2", "pro"}
    assert b.dynamic_metadata["key_id"] == "kid2"


def test_auth_service_name_matches_envoys_descriptor():
    """The service name authz registers and reports health under is Envoy's own."""
    from envoy.service.auth.v3 import external_auth_pb2 as pb

    from authz import AUTH_SERVICE

    assert pb.DESCRIPTOR.services_by_name["Authorization"].full_name == AUTH_SERVICE
