"""A bucket per route ([tiers.NAME.buckets.BUCKET], a route's tollway_bucket) in check.lua
against a real Redis, on a pinned clock: a route's requests drain only its bucket, and the
headers describe that bucket; a tier without the bucket takes from its default one; an
account's rate and burst overrides are its default bucket's; no lease is taken on a named
bucket."""

from __future__ import annotations

import pytest

from authz.check_reply import Code
from authz.check_store import ScriptCall, StoreCheck
from authz.check_tiers import CheckTiers
from authz.decision import on_reply
from authz.request import RequestInfo
from tests.integration.test_check_script import T0, Harness
from tollway.accounts import Accounts
from tollway.clock import FixedClock
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration

TIERS = CheckTiers(
    parse_tiers(
        """
[tiers.split]
requests_per_second = 10.0
burst = 10
monthly_quota = 100
over_quota = "block"

[tiers.split.buckets.reports]
requests_per_second = 1.0
burst = 2

[tiers.plain]
requests_per_second = 10.0
burst = 10
monthly_quota = 0
over_quota = "bill"

[tiers.leasing]
requests_per_second = 100.0
burst = 100
monthly_quota = 0
over_quota = "bill"
limiter = "lease"
lease_tokens = 10

[tiers.leasing.buckets.reports]
requests_per_second = 1.0
burst = 3
""",
        "buckets",
    )
)


@pytest.fixture
def h(redis, pipe) -> Harness:
    return Harness(redis, pipe, FixedClock(T0))


async def check(h: Harness, kid: str, digest: str, bucket: str | None, **kw):
    args = TIERS.tier_args(None, bucket)
    return await h.limiter.check(StoreCheck(kid, digest, 1, args, **kw))


def headers(kid: str, out, bucket: str | None) -> dict[str, str]:
    req = RequestInfo(key="k", strip=(), bucket=bucket)
    return dict(on_reply(req, kid, out, TIERS.tier_for(out, bucket)).client_headers)


async def test_a_route_s_requests_drain_only_its_bucket(h):
    _, kid, digest = await h.key("split")
    outs = [await check(h, kid, digest, "reports") for _ in range(3)]
    assert [o.code for o in outs] == [Code.OK, Code.OK, Code.RATE]
    assert [o.remaining for o in outs[:2]] == [1, 0]
    assert outs[2].wait_ms == 1000  # at the bucket's 1 a second
    allowed = headers(kid, outs[1], "reports")
    assert (allowed["ratelimit-limit"], allowed["ratelimit-remaining"]) == ("2", "0")
    assert allowed["ratelimit-policy"] == "2;w=2"  # the route's bucket: 2 at 1/s
    refused = on_reply(RequestInfo(key="k", strip=(), bucket="reports"), kid, outs[2],
                       TIERS.tier_for(outs[2], "reports"))  # fmt: skip
    assert refused.reason is not None and refused.reason.value == "rate_limited"
    assert dict(refused.client_headers)["retry-after"] == "1"
    # The default bucket is untouched; the quota counted every route.
    other = await check(h, kid, digest, None)
    assert (other.code, other.remaining, other.quota_used) == (Code.OK, 9, 3)
    assert headers(kid, other, None)["ratelimit-limit"] == "10"
    state = await h.redis.hgetall(h.state(kid))
    assert float(state["t:reports"]) == 0 and float(state["tokens"]) == 9


async def test_a_tier_without_the_bucket_takes_from_its_default_one(h):
    _, kid, digest = await h.key("plain")
    out = await check(h, kid, digest, "reports")
    assert (out.code, out.remaining) == (Code.OK, 9)
    assert headers(kid, out, "reports")["ratelimit-limit"] == "10"
    assert "t:reports" not in await h.redis.hgetall(h.state(kid))


async def test_rate_and_burst_overrides_are_the_default_bucket_s(h):
    _, kid, digest = await h.key("split")
    await Accounts(h.store).set_limits(h.account[kid], {"burst": 50}, False)
    named = await check(h, kid, digest, "reports")
    assert named.limits is not None and named.limits[:2] == (1.0, 2)  # the bucket's own
    assert headers(kid, named, "reports")["ratelimit-limit"] == "2"
    default = await check(h, kid, digest, None)
    assert default.limits is not None and default.limits[:2] == (10.0, 50)
    assert headers(kid, default, None)["ratelimit-limit"] == "50"


async def test_no_lease_is_taken_on_a_named_bucket(h):
    _, kid, digest = await h.key("leasing")
    named = await check(h, kid, digest, "reports", call=ScriptCall.LEASE)
    assert (named.code, named.granted, named.remaining) == (Code.OK, 0, 2)
    default = await check(h, kid, digest, None, call=ScriptCall.LEASE)
    assert default.granted == 10
