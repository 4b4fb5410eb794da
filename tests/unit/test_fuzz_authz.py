"""Hostile CheckRequests (hypothesis): never a crash, never a gRPC error, never a 5xx from authz
itself, and a key that is not well formed never reaches the store."""

from __future__ import annotations

import asyncio

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3 import external_auth_pb2 as pb
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from authz.check_reply import CheckReply, Code
from tests.unit.test_service import FakeStore, service
from tollway.keys import generate_key, parse_key

VALID = generate_key()
OUTCOMES = [CheckReply(Code.OK, "pro", "cus_1", remaining=3), CheckReply(Code.UNKNOWN_KEY),
            CheckReply(Code.RATE, "free", "cus_1", wait_ms=900), CheckReply(Code.NO_TIER, "gone", "c")]  # fmt: skip


def nearly_valid() -> st.SearchStrategy[str]:
    """The valid key with one character changed, dropped, doubled, or case-flipped."""

    def mutate(i: int, c: str, how: int) -> str:
        i %= len(VALID)
        return [VALID[:i] + c + VALID[i + 1 :], VALID[:i] + VALID[i + 1 :],
                VALID[:i] + VALID[i] * 2 + VALID[i + 1 :], VALID.swapcase()][how]  # fmt: skip

    return st.builds(mutate, st.integers(0, 200), st.characters(), st.integers(0, 3))


header_names = st.one_of(
    st.sampled_from(["x-api-key", "authorization", "X-Api-Key", "AUTHORIZATION", "x-tollway-customer"]),
    st.text(min_size=1, max_size=40),
)  # fmt: skip
header_values = st.one_of(
    nearly_valid(),
    st.just(VALID),
    st.builds(lambda k: f"Bearer {k}", st.one_of(nearly_valid(), st.just(VALID))),
    st.text(max_size=300),
    st.text(min_size=5000, max_size=20000),  # huge
    st.sampled_from(["", " ", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "\x00", "tw_live_"]),
)
extensions = st.dictionaries(
    st.sampled_from(["tollway_cost", "tollway_feature", "other"]),
    st.one_of(st.text(max_size=30), st.integers(-5, 10**12).map(str)), max_size=3,
)  # fmt: skip


@st.composite
def check_requests(draw: st.DrawFn) -> pb.CheckRequest:
    headers = draw(st.dictionaries(header_names, header_values, max_size=30))
    http = ac.AttributeContext.HttpRequest(method=draw(st.text(max_size=10)), headers=headers,
                                           path=draw(st.text(max_size=100)))  # fmt: skip
    if draw(st.booleans()):  # Envoy's raw header_map form, which may repeat a header
        raw = draw(st.lists(st.tuples(header_names, header_values), max_size=20))
        http = ac.AttributeContext.HttpRequest(header_map=base_pb2.HeaderMap(headers=[
            base_pb2.HeaderValue(key=k, raw_value=v.encode("utf-8", "surrogatepass")) for k, v in raw]))  # fmt: skip
    if draw(st.booleans()):
        return pb.CheckRequest()  # no attributes at all
    return pb.CheckRequest(attributes=ac.AttributeContext(
        request=ac.AttributeContext.Request(http=http), context_extensions=draw(extensions)))  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=check_requests(), outcome=st.sampled_from(OUTCOMES))
def test_any_check_request_gets_a_clear_answer(
    request: pb.CheckRequest, outcome: CheckReply
) -> None:
    fake = FakeStore()
    fake.outcome = outcome
    svc = service(fake)
    raw = asyncio.run(svc.Check(request, None))
    resp = pb.CheckResponse.FromString(raw)
    if resp.HasField("ok_response"):
        assert resp.status.code == 0
    else:
        status = resp.denied_response.status.code
        assert status in (401, 402, 403, 429) or (
            status == 503 and resp.status.message in ("plan_unavailable", "route_misconfigured")
        ), (status, resp.status.message)
    event(f"reached the store: {bool(fake.calls)}; allowed: {resp.HasField('ok_response')}")
    for key_id, digest, _, _ in fake.calls:  # whatever reached the store was a well-formed key
        assert len(key_id) == 16 and len(digest) == 64
    if fake.calls:
        assert any(parse_key(v.strip().removeprefix("Bearer ").strip()) for v in _values(request))


def _values(request: pb.CheckRequest) -> list[str]:
    http = request.attributes.request.http
    return [
        *http.headers.values(),
        *(h.raw_value.decode("utf-8", "replace") for h in http.header_map.headers),
    ]
