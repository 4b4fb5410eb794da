"""Daily and hourly caps (per_day, per_hour) in check.lua against a real Redis, on a pinned
clock: the request past a cap is refused until its UTC window ends, counted nowhere; the
windows reset at 00:00 UTC and on the hour; a lease never reaches past a cap; an account's
overrides set or lift them."""

from __future__ import annotations

import pytest

from authz.check_reply import Code
from authz.check_store import ScriptCall, StoreCheck
from authz.check_tiers import CheckTiers
from authz.decision import on_reply
from authz.request import RequestInfo
from tests.integration.test_check_script import T0, Harness
from tests.support import LEASED_TIER
from tollway.accounts import Accounts
from tollway.clock import FixedClock
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration

CAPS = CheckTiers(
    parse_tiers(
        """
[tiers.daily]
requests_per_second = 1000.0
burst = 1000
monthly_quota = 0
over_quota = "bill"
per_day = 3

[tiers.hourly]
requests_per_second = 1000.0
burst = 1000
monthly_quota = 0
over_quota = "bill"
per_day = 5
per_hour = 2
"""
        + LEASED_TIER  # lease_tokens 20, with a cap of 7 an hour
        + "per_hour = 7\n",
        "caps",
    )
)
HOUR_MS, DAY_MS = 3_600_000, 86_400_000


@pytest.fixture
def h(redis, pipe) -> Harness:
    return Harness(redis, pipe, FixedClock(T0 + 22 * HOUR_MS))  # 22:00 UTC


async def check(h: Harness, kid: str, digest: str, call: ScriptCall = ScriptCall.CHECK):
    return await h.limiter.check(StoreCheck(kid, digest, 1, CAPS.tier_args(None), call=call))


async def counted(h: Harness, kid: str) -> int:
    return sum(int(v) for v in (await h.usage(kid)).values())


async def test_the_day_s_cap_refuses_until_midnight_utc(h):
    _, kid, digest = await h.key("daily")
    assert [(await check(h, kid, digest)).code for _ in range(3)] == [Code.OK] * 3
    h.clock.advance(30 * 60_000)  # 22:30
    denied = await check(h, kid, digest)
    assert (denied.code, denied.wait_ms) == (Code.DAY, 90 * 60_000)  # until 00:00
    assert await counted(h, kid) == 3  # the refused request is counted nowhere
    d = on_reply(RequestInfo(key="k", strip=()), kid, denied, CAPS.tier("daily"))
    assert d.reason is not None and (d.reason.http_status, d.reason.value) == (
        429,
        "daily_limit_exceeded",
    )
    headers = dict(d.client_headers)
    assert headers["retry-after"] == "5400" and headers["ratelimit-limit"] == "3"
    assert "2026-01-02T00:00:00Z" in d.message
    h.clock.advance(90 * 60_000 - 1)  # 23:59:59.999: still today
    assert (await check(h, kid, digest)).code is Code.DAY
    h.clock.advance(1)  # midnight: a new day
    assert (await check(h, kid, digest)).code is Code.OK
    assert await counted(h, kid) == 4


async def test_the_hour_s_cap_within_the_day_s(h):
    _, kid, digest = await h.key("hourly")
    codes = [(await check(h, kid, digest)).code for _ in range(3)]
    assert codes == [Code.OK, Code.OK, Code.HOUR]
    assert (await check(h, kid, digest)).wait_ms == HOUR_MS  # at 22:00 sharp: until 23:00
    h.clock.advance(HOUR_MS)  # 23:00
    codes = [(await check(h, kid, digest)).code for _ in range(3)]
    assert codes == [Code.OK, Code.OK, Code.HOUR]
    h.clock.advance(HOUR_MS)  # 00:00, a new day and hour
    assert [(await check(h, kid, digest)).code for _ in range(2)] == [Code.OK, Code.OK]
    h.clock.advance(HOUR_MS)
    assert [(await check(h, kid, digest)).code for _ in range(3)] == [
        Code.OK,
        Code.OK,
        Code.HOUR,
    ]
    h.clock.advance(HOUR_MS)  # 02:00: 4 today, the day's cap (5) comes first now
    assert (await check(h, kid, digest)).code is Code.OK
    out = await check(h, kid, digest)
    assert (out.code, out.wait_ms) == (Code.DAY, DAY_MS - 2 * HOUR_MS)


async def test_a_lease_never_reaches_past_the_hour_s_cap(h):
    _, kid, digest = await h.key("leased")
    out = await check(h, kid, digest, ScriptCall.LEASE)
    assert (out.code, out.granted) == (Code.OK, 6)  # 7 an hour: this one and 6 more
    after = await check(h, kid, digest)
    assert after.code is Code.OK  # the lease's 6 are not counted until settled


async def test_an_account_s_overrides_set_and_lift_its_caps(h):
    _, kid, digest = await h.key("daily")
    accounts = Accounts(h.store)
    await accounts.set_limits(h.account[kid], {"per_day": 1, "per_hour": 0}, clear=False)
    out = await check(h, kid, digest)
    assert out.code is Code.OK and out.limits is not None and out.limits[4:6] == (1, 0)
    assert CAPS.tier_for(out).per_day == 1
    assert (await check(h, kid, digest)).code is Code.DAY
    await accounts.set_limits(h.account[kid], {"per_day": 0}, clear=True)
    assert [(await check(h, kid, digest)).code for _ in range(5)] == [Code.OK] * 5
    # Counted only while a cap is on (the tier's or the account's): the one request of then.
    view = await accounts.show(h.account[kid], now=(T0 + 22 * HOUR_MS) // 1000)
    assert (view.day_used, view.hour_used) == (1, 1)
