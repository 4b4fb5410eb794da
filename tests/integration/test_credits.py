"""Prepaid credits against a real Redis, on a pinned clock: check.lua spends a request's credits
in the same call that decides it and refuses (402 credits_exhausted) at the exact request the
balance cannot cover; the access-log receiver gives a refunded request's credits back once and
takes reported units after the response (below zero by at most that response's amount); a
reference moves credits once however often it is applied; 64 clients at once spend exactly the
balance. And a Hypothesis property: purchases, requests, refunds, units and adjustments in any
order, many at once, keep the ledger's sum equal to the balance."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from authz.check_reply import Code
from authz.check_store import ScriptCall, StoreCheck
from authz.check_tiers import CheckTiers
from authz.decision import CREDITS_HEADER, on_reply
from authz.request import RequestInfo
from metering.metrics import ReceiverMetrics
from metering.receiver import Receiver
from tests.integration.test_check_script import T0, Harness
from tollway import schema
from tollway.audit import AuditLog
from tollway.clock import FixedClock
from tollway.credits import Credits, Movement
from tollway.errors import InvalidInput
from tollway.tiers import parse_tiers
from tollway.usage_stamp import Stamper

pytestmark = pytest.mark.integration

TABLE = parse_tiers(
    """
[tiers.payg]
requests_per_second = 100000.0
burst = 100000
monthly_quota = 0
over_quota = "block"
prepaid = true
credits_per_request = 2
credits_per_unit = 3
""",
    "credits",
)
TIERS = CheckTiers(TABLE)
STAMPER = Stamper("credits-test-secret")
HOUR = (T0 // 1000) - (T0 // 1000) % 3600


@pytest.fixture
def h(redis, pipe) -> Harness:
    return Harness(redis, pipe, FixedClock(T0))


async def buy(h: Harness, kid: str, credits: int, ref: str = "cs_1"):
    return await Credits(h.redis).move(
        h.account[kid], ref, credits, Movement.PURCHASE, "starter", "stripe:evt_1"
    )


async def check(h: Harness, kid: str, digest: str, cost: int = 1):
    return await h.limiter.check(StoreCheck(kid, digest, cost, TIERS.tier_args(None)))


def receiver(h: Harness) -> Receiver:
    metrics = ReceiverMetrics(CollectorRegistry())
    return Receiver(h.redis, lambda: TABLE, STAMPER, metrics, 60, 900, 1000)


def stamp(h: Harness, kid: str, charged: int) -> str:
    """authz's stamp for a request of ``kid`` that spent ``charged`` credits (a new nonce)."""
    return STAMPER.sign(h.account[kid], kid, "payg", T0 // 1000, credits=charged)


async def entry(h: Harness, text: str, refund: bool = False, units: int = 0) -> bool:
    """The access log's entry for the request stamped ``text``, as the receiver applies it
    (refunded when not billed; else with its reported units); False if applied before."""
    read = STAMPER.read(text)
    assert read is not None
    r = receiver(h)
    write = r._write_for(read, refund, True, units, TABLE.tiers["payg"].credits_per_unit)
    (done,) = await r._write([write])
    return done


async def test_requests_spend_their_credits_and_the_one_that_cannot_is_refused(h):
    _, kid, digest = await h.key("payg")
    assert (await check(h, kid, digest)).code is Code.CREDITS  # no balance yet
    await buy(h, kid, 9)
    outs = [await check(h, kid, digest) for _ in range(4)]
    assert [(o.code, o.credits, o.charged) for o in outs] == [
        (Code.OK, 7, 2), (Code.OK, 5, 2), (Code.OK, 3, 2), (Code.OK, 1, 2)
    ]  # fmt: skip
    refused = await check(h, kid, digest)  # 2 needed, 1 left
    assert (refused.code, refused.credits, refused.charged) == (Code.CREDITS, 1, 0)
    assert await Credits(h.redis).balance(h.account[kid]) == 1  # a refusal spends nothing
    assert await h.usage(kid) == {}  # prepaid: nothing goes to the usage a meter drains
    hours = await h.redis.hgetall(schema.credit_hours(h.account[kid]))
    assert hours == {f"r:{HOUR}": "8"}
    d = on_reply(RequestInfo(key="k", strip=(), cost=1), kid, refused, TIERS.tier("payg"))
    assert d.reason is not None and (d.reason.http_status, d.reason.value) == (
        402,
        "credits_exhausted",
    )
    assert dict(d.client_headers) == {CREDITS_HEADER: "1"}
    assert "costs 2 credits and your balance is 1" in d.message
    ok = on_reply(RequestInfo(key="k", strip=()), kid, outs[0], TIERS.tier("payg"))
    assert dict(ok.client_headers)[CREDITS_HEADER] == "7"


async def test_a_route_cost_multiplies_the_credits(h):
    _, kid, digest = await h.key("payg")
    await buy(h, kid, 10)
    assert (await check(h, kid, digest, cost=5)).charged == 10
    assert (await check(h, kid, digest, cost=1)).code is Code.CREDITS


async def test_a_refunded_request_gets_its_credits_back_once(h):
    _, kid, digest = await h.key("payg")
    await buy(h, kid, 4)
    out = await check(h, kid, digest)
    text = stamp(h, kid, out.charged)
    assert STAMPER.read(text).credits == 2
    assert await entry(h, text, refund=True)
    assert not await entry(h, text, refund=True)  # the same entry again
    credits = Credits(h.redis)
    assert await credits.balance(h.account[kid]) == 4
    assert await h.usage(kid) == {}  # never counted in usage: nothing taken off it
    totals = await credits.totals(h.account[kid])
    assert totals.consistent and totals.balance == 4


async def test_reported_units_go_below_zero_by_one_response_at_most_and_then_refuse(h):
    _, kid, digest = await h.key("payg")
    await buy(h, kid, 4)
    out = await check(h, kid, digest)  # 2 left
    assert await entry(
        h, stamp(h, kid, out.charged), units=5
    )  # 15 credits of units, after the response
    credits = Credits(h.redis)
    assert await credits.balance(h.account[kid]) == -13  # 2 - 15: one response's amount
    assert (await check(h, kid, digest)).code is Code.CREDITS  # the next one is refused
    rows = {e.kind: e.credits for e in await credits.ledger(h.account[kid])}
    assert rows == {Movement.PURCHASE: 4, Movement.REQUESTS: -2, Movement.UNITS: -15}
    assert (await credits.totals(h.account[kid])).consistent


async def test_a_reference_moves_credits_once_and_a_refund_moves_what_grew(h):
    _, kid, _ = await h.key("payg")
    account = h.account[kid]
    credits = Credits(h.redis)
    first = await buy(h, kid, 1000, ref="cs_a")
    again = await buy(h, kid, 1000, ref="cs_a")  # the webhook delivered twice
    assert (first.applied, first.balance, again.applied, again.balance) == (True, 1000, False, 1000)
    refund = "refund:pi_a"
    part = await credits.move(account, refund, -400, Movement.REFUND, "charge.refunded", "s")
    more = await credits.move(account, refund, -1000, Movement.REFUND, "charge.refunded", "s")
    stale = await credits.move(account, refund, -400, Movement.REFUND, "an older delivery", "s")
    assert [(m.applied, m.credits) for m in (part, more, stale)] == [
        (True, -400), (True, -600), (False, 0)
    ]  # fmt: skip
    assert await credits.balance(account) == 0
    assert (await credits.totals(account)).consistent


async def test_an_operator_adjustment_needs_a_reason_and_is_audited(h, redis):
    _, kid, _ = await h.key("payg")
    account = h.account[kid]
    audit = AuditLog(redis)
    credits = Credits(redis, audit)
    with pytest.raises(InvalidInput, match="give a reason"):
        await credits.adjust(account, 5, " ", "cli", "r1", Movement.GRANT)
    with pytest.raises(InvalidInput, match="non-zero integer from 1"):
        await credits.adjust(account, -5, "oops", "cli", "r1", Movement.GRANT)
    moved = await credits.adjust(
        account, -5, "double credit on Tuesday", "cli", "r2", Movement.ADJUSTMENT
    )
    assert (moved.applied, moved.balance) == (True, -5)
    (logged,) = await audit.entries(target=f"account:{account}")
    assert (logged.actor, logged.action) == ("cli", "credits_adjustment")
    assert logged.changes == {"credits": -5, "reason": "double credit on Tuesday", "balance": -5}


async def test_64_clients_at_once_spend_exactly_the_balance(h):
    """1,000 credits at 2 a request: exactly 500 of 64 clients' 1,280 requests pass."""
    _, kid, digest = await h.key("payg")
    await buy(h, kid, 1000)

    async def client() -> int:
        passed = 0
        for _ in range(20):
            passed += (await check(h, kid, digest)).code is Code.OK
        return passed

    assert sum(await asyncio.gather(*(client() for _ in range(64)))) == 500
    assert await Credits(h.redis).balance(h.account[kid]) == 0


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("buy"), st.integers(1, 50)),
        st.tuples(st.just("check"), st.integers(1, 3)),
        st.tuples(st.just("refund"), st.integers(0, 9)),
        st.tuples(st.just("units"), st.integers(0, 4)),
        st.tuples(st.just("adjust"), st.integers(-30, 30).filter(bool)),
        st.tuples(st.just("refund_payment"), st.integers(0, 3)),
    ),
    min_size=1,
    max_size=30,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(OPS, min_size=1, max_size=4))
async def test_the_ledger_always_sums_to_the_balance(h, batches):
    """Any mix of purchases (some repeated), requests, refunded requests (some twice), units,
    adjustments and refunds of purchases, each batch run all at once: the ledger's sum is the
    balance after every batch, and the balance is what a model of each movement says."""
    _, kid, digest = await h.key("payg")
    account = h.account[kid]
    credits = Credits(h.redis)
    model = 0
    spent: list[int] = []  # credits of each request let through
    refunded: set[int] = set()
    bought: list[tuple[str, int]] = []
    for i, ops in enumerate(batches):
        calls = []
        for j, (op, n) in enumerate(ops):
            if op == "buy":
                ref = f"cs_{i}_{j}" if n % 3 else "cs_same"  # some purchases are repeats
                calls.append(
                    ("buy", n, ref, credits.move(account, ref, 10 * n, Movement.PURCHASE, "p", "s"))
                )
                bought.append((ref, 10 * n))
            elif op == "check":
                calls.append(("check", n, "", check(h, kid, digest, cost=n)))
            elif op == "refund" and spent:
                k = n % len(spent)
                calls.append(("refund", k, "", _refund_entry(h, kid, spent[k], k)))
            elif op == "units":
                calls.append(("units", n, "", entry(h, stamp(h, kid, 0), units=n)))
            elif op == "adjust":
                calls.append(
                    (
                        "adjust",
                        n,
                        f"adj_{i}_{j}",
                        credits.adjust(
                            account, n, "test", "cli", f"adj_{i}_{j}", Movement.ADJUSTMENT
                        ),
                    )
                )
            elif op == "refund_payment" and bought:
                ref, amount = bought[n % len(bought)]
                calls.append(
                    (
                        "refund_payment",
                        amount,
                        ref,
                        credits.move(
                            account, f"refund:{ref}", -amount // 2, Movement.REFUND, "r", "s"
                        ),
                    )
                )
        results = await asyncio.gather(*(c[3] for c in calls))
        for (op, n, _ref, _), out in zip(calls, results, strict=True):
            if op in ("buy", "adjust", "refund_payment"):
                model += out.credits
            elif op == "check" and out.code is Code.OK:
                model -= out.charged
                spent.append(out.charged)
            elif op == "refund" and out:
                model += spent[n]
                refunded.add(n)
            elif op == "units":
                model -= n * 3
        totals = await credits.totals(account)
        assert totals.consistent, (batches, totals)
        assert totals.balance == model


async def _refund_entry(h: Harness, kid: str, charged: int, k: int) -> bool:
    """The refund of request ``k``: one nonce per request, so a repeat applies nothing."""
    text = STAMPER.sign(h.account[kid], kid, "payg", T0 // 1000, slot=f"{k:017x}", credits=charged)
    return await entry(h, text, refund=True)


LEASED = CheckTiers(
    parse_tiers(
        """
[tiers.payg_lease]
requests_per_second = 100000.0
burst = 100000
monthly_quota = 0
over_quota = "block"
prepaid = true
credits_per_request = 2
limiter = "lease"
lease_tokens = 10
""",
        "leased",
    )
)


async def test_a_lease_reserves_its_credits_and_its_settlement_gives_back_the_unused(h):
    """Lease mode: a lease takes the credits of its tokens when it is taken, never past the
    balance, and its settlement gives back those of the tokens it did not use, once."""
    _, kid, digest = await h.key("payg_lease")
    await buy(h, kid, 25)
    args = LEASED.tier_args(None)
    leased = await h.limiter.check(StoreCheck(kid, digest, 1, args, call=ScriptCall.LEASE))
    # 2 for the request, then 10 tokens' worth would be 20 more; 23 left covers 11 tokens.
    assert (leased.code, leased.charged, leased.granted, leased.credits) == (Code.OK, 2, 10, 3)
    second = await h.limiter.check(StoreCheck(kid, digest, 1, args, call=ScriptCall.LEASE))
    assert (second.code, second.granted, second.credits) == (Code.OK, 0, 1)  # 1: no token more
    assert (await h.limiter.check(StoreCheck(kid, digest, 1, args))).code is Code.CREDITS
    # The first lease served 4 requests and settles with 6 unused tokens: 12 credits back.
    settle = StoreCheck(kid, digest, 0, args, 4, 6, ScriptCall.SETTLE, "s1")
    assert (await h.limiter.check(settle)).code is Code.OK
    await h.limiter.check(settle)  # a retry of the same settlement gives nothing twice
    credits = Credits(h.redis)
    assert await credits.balance(h.account[kid]) == 13
    assert await h.usage(kid) == {}  # the lease's requests go to no meter either
    totals = await credits.totals(h.account[kid])
    assert totals.consistent and totals.balance == 13


async def test_credits_expire_oldest_first_once_and_never_below_zero(redis):
    """credits_expire_days: what is left of a lot past its life expires, the oldest lots used
    first; expiring again changes nothing; a later lot expires in its turn; the ledger still
    sums to the balance."""
    now = [1_800_000_000]
    credits = Credits(redis, now=lambda: now[0])
    account = "free_expiry"
    await redis.hset(schema.account_state(account), "tier", "payg")
    day = 86400
    await credits.move(account, "payment:pi_1", 100, Movement.PURCHASE, "p", "s")  # day 0
    now[0] += 10 * day
    await credits.move(account, "payment:pi_2", 100, Movement.PURCHASE, "p", "s")  # day 10
    await credits.move(account, "spend", -50, Movement.ADJUSTMENT, "used", "s")  # from lot 1
    assert not (await credits.expire(account, 30 * day, "t")).applied  # nothing past 30 days
    now[0] += 25 * day  # day 35: lot 1 is past its life, 50 of it left
    moved = await credits.expire(account, 30 * day, "t")
    assert (moved.applied, moved.credits, moved.balance) == (True, -50, 100)
    assert not (await credits.expire(account, 30 * day, "t")).applied  # once
    await credits.move(account, "spend2", -30, Movement.ADJUSTMENT, "used", "s")  # from lot 2
    now[0] += 10 * day  # day 45: lot 2 too
    moved = await credits.expire(account, 30 * day, "t")
    assert (moved.credits, moved.balance) == (-70, 0)
    assert not (await credits.expire(account, 30 * day, "t")).applied
    totals = await credits.totals(account)
    assert totals.consistent and totals.balance == 0
    kinds = [e.kind for e in await credits.ledger(account)]
    assert kinds.count(Movement.EXPIRY) == 2


async def test_the_portal_pass_expires_the_credits_of_tiers_that_expire_them(redis):
    """The expiry pass looks at every account with a ledger: a tier with credits_expire_days
    has what is past its life expired; a tier without keeps its credits."""
    from portal.expirer import Expirer

    table = parse_tiers(
        """
[tiers.payg_30]
requests_per_second = 1.0
burst = 1
monthly_quota = 0
over_quota = "block"
prepaid = true
credits_expire_days = 30
"""
        + '[tiers.payg_forever]\nrequests_per_second = 1.0\nburst = 1\nmonthly_quota = 0\nover_quota = "block"\nprepaid = true\n',
        "t",
    )
    old = Credits(redis, now=lambda: time.time() - 31 * 86400)
    for account, tier in (("free_a", "payg_30"), ("free_b", "payg_forever")):
        await redis.hset(schema.account_state(account), "tier", tier)
        await old.move(account, "payment:pi", 40, Movement.PURCHASE, "p", "s")
    assert await Expirer(redis, lambda: table).run_once() == {"free_a": 40}
    assert await Expirer(redis, lambda: table).run_once() == {}
    assert (
        await Credits(redis).balance("free_a") == 0 and await Credits(redis).balance("free_b") == 40
    )


async def test_a_balance_of_any_size_reads_back_exactly(h):
    """Balances past what Lua's tostring writes in full (1e+15) come back as integers."""
    _, kid, digest = await h.key("payg")
    await buy(h, kid, 10**12)
    await Credits(h.redis).move(h.account[kid], "more", 10**12, Movement.GRANT, "g", "s")
    for _ in range(999):  # 10**15 - 1 and more: past %.14g
        await Credits(h.redis).move(h.account[kid], f"m{_}", 10**12, Movement.GRANT, "g", "s")
    out = await check(h, kid, digest)
    assert (out.code, out.credits, out.charged) == (Code.OK, 1001 * 10**12 - 2, 2)
