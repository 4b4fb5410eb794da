"""Concurrency caps (max_concurrent) in check.lua against a real Redis, on a pinned clock: a
request takes a slot at its check; past the cap it is refused and counted nowhere; the
access-log receiver frees a slot by the stamp that names it; a slot no entry frees lapses at
its bound; an override sets a cap, under which no lease is taken; a caller without an access
log (slot id "") is held to the cap but takes no slot. And a Hypothesis property: any order
of checks, completions and clock steps keeps in flight within the cap, and no slot outlives
its bound."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from authz.check_reply import SLOT_HELD, Code
from authz.check_store import ScriptCall, StoreCheck
from authz.check_tiers import CheckTiers
from authz.decision import on_reply
from authz.request import RequestInfo
from metering.metrics import ReceiverMetrics
from metering.receiver import Receiver
from tests.integration.test_check_script import T0, Harness
from tests.support import LEASED_TIER
from tollway import schema
from tollway.accounts import Accounts
from tollway.clock import FixedClock
from tollway.nonces import nonces
from tollway.tiers import parse_tiers
from tollway.usage_stamp import Stamper

pytestmark = pytest.mark.integration

TABLE = parse_tiers(
    """
[tiers.two]
requests_per_second = 1000.0
burst = 1000
monthly_quota = 0
over_quota = "bill"
max_concurrent = 2
"""
    + LEASED_TIER,
    "concurrency",
)
TIERS = CheckTiers(TABLE)
BOUND_MS = 5_000
STAMPER = Stamper("concurrency-test-secret")


@pytest.fixture
def h(redis, pipe) -> Harness:
    return Harness(redis, pipe, FixedClock(T0), slot_ms=BOUND_MS)


SLOT_IDS = nonces()


async def check(h: Harness, kid: str, digest: str, slot: str | None = None, **kw):
    slot = next(SLOT_IDS) if slot is None else slot
    args = TIERS.tier_args(None)
    return slot, await h.limiter.check(StoreCheck(kid, digest, 1, args, slot=slot, **kw))


async def in_flight(h: Harness, kid: str) -> list[str]:
    return list(await h.redis.zrange(schema.in_flight(h.account[kid]), 0, -1))


def receiver(h: Harness) -> Receiver:
    metrics = ReceiverMetrics(CollectorRegistry())
    return Receiver(h.redis, lambda: TABLE, STAMPER, metrics, 60, 900, 1000)


async def finish(h: Harness, kid: str, slot: str, refund: bool = False) -> None:
    """The access-log receiver gets the request's entry: its stamp names the slot."""
    stamp = STAMPER.read(STAMPER.sign(h.account[kid], kid, "two", T0 // 1000, slot))
    assert stamp is not None and stamp.slot
    await receiver(h).apply(stamp, refund, True, 0)


async def test_a_request_past_the_cap_is_refused_and_counted_nowhere(h):
    _, kid, digest = await h.key("two")
    held = [await check(h, kid, digest) for _ in range(2)]
    assert [out.code for _, out in held] == [Code.OK, Code.OK]
    assert all(out.granted == SLOT_HELD for _, out in held)  # each holds a slot
    assert sorted(await in_flight(h, kid)) == sorted(s for s, _ in held)
    _, refused = await check(h, kid, digest)
    assert (refused.code, refused.wait_ms) == (Code.CONCURRENCY, 1000)
    assert sum(int(v) for v in (await h.usage(kid)).values()) == 2  # not counted
    assert len(await in_flight(h, kid)) == 2  # and no slot taken
    d = on_reply(RequestInfo(key="k", strip=()), kid, refused, TIERS.tier("two"))
    assert d.reason is not None and (d.reason.http_status, d.reason.value) == (
        429,
        "concurrency_exceeded",
    )
    assert dict(d.client_headers) == {"retry-after": "1"}
    assert "2 requests in flight at once" in d.message


async def test_the_access_log_frees_the_slot_its_stamp_names(h):
    _, kid, digest = await h.key("two")
    first, _ = await check(h, kid, digest)
    second, _ = await check(h, kid, digest)
    await finish(h, kid, first)  # billed as counted: only the slot is freed
    assert await in_flight(h, kid) == [second]
    await finish(h, kid, first)  # the entry again (Envoy's stream retry): frees nothing more
    assert await in_flight(h, kid) == [second]
    assert (await check(h, kid, digest))[1].code is Code.OK
    await finish(h, kid, second, refund=True)  # a refunded request frees its slot too
    assert len(await in_flight(h, kid)) == 1
    assert sum(int(v) for v in (await h.usage(kid)).values()) == 2  # 3 counted, 1 refunded


async def test_a_slot_no_entry_frees_lapses_at_its_bound(h):
    _, kid, digest = await h.key("two")
    for _ in range(2):
        await check(h, kid, digest)
    h.clock.advance(BOUND_MS - 1)
    assert (await check(h, kid, digest))[1].code is Code.CONCURRENCY  # held until the bound
    h.clock.advance(1)
    assert (await check(h, kid, digest))[1].code is Code.OK  # lapsed: taken again
    assert len(await in_flight(h, kid)) == 1  # the lapsed ones are gone


async def test_without_an_access_log_a_request_is_held_to_the_cap_but_takes_no_slot(h):
    """The management API's verify: no access log tells it when the caller's request ends."""
    _, kid, digest = await h.key("two")
    _, out = await check(h, kid, digest, slot="")
    assert (out.code, out.granted) == (Code.OK, 0)
    assert await in_flight(h, kid) == []
    for _ in range(2):
        await check(h, kid, digest)
    assert (await check(h, kid, digest, slot=""))[1].code is Code.CONCURRENCY


async def test_an_override_sets_a_cap_and_no_lease_is_taken_under_it(h):
    _, kid, digest = await h.key("leased")
    _, leased = await check(h, kid, digest, call=ScriptCall.LEASE)
    assert leased.granted == 20  # no cap: a lease
    await Accounts(h.store).set_limits(h.account[kid], {"max_concurrent": 1}, False)
    slot, capped = await check(h, kid, digest, call=ScriptCall.LEASE)
    assert (capped.code, capped.granted) == (Code.OK, SLOT_HELD)  # a slot, and no lease
    assert capped.limits is not None and capped.limits[6] == 1
    assert TIERS.tier_for(capped).max_concurrent == 1
    assert (await check(h, kid, digest))[1].code is Code.CONCURRENCY
    await Accounts(h.store).set_limits(h.account[kid], {"max_concurrent": 0}, False)
    assert (await check(h, kid, digest))[1].code is Code.OK  # 0: no cap
    view = await Accounts(h.store).show(h.account[kid], now=T0 // 1000)
    assert view.in_flight == 1 and view.overrides == {"max_concurrent": "0"}
    assert slot in await in_flight(h, kid)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.one_of(
            st.just(("check", 0)),
            st.tuples(st.just("finish"), st.integers(0, 5)),
            st.tuples(st.just("wait"), st.integers(0, BOUND_MS + 1000)),
        ),
        min_size=1,
        max_size=40,
    )
)
async def test_any_order_of_checks_and_completions_keeps_within_the_cap(h, steps):
    """Checks, access-log completions (of any slot, held or not, twice or never) and clock
    steps in any order, against a model of the slots: a check passes exactly when fewer than
    2 slots are live (taken, not freed, not past their bound); in flight never exceeds 2; a
    slot never outlives its bound."""
    _, kid, digest = await h.key("two")
    live: dict[str, int] = {}  # slot -> when it lapses (ms), per the model
    taken: list[str] = []  # every slot ever taken, freed or not
    for op, n in steps:
        now = h.clock.now_ms()
        live = {s: end for s, end in live.items() if end > now}
        if op == "check":
            slot, out = await check(h, kid, digest)
            assert out.code is (Code.OK if len(live) < 2 else Code.CONCURRENCY), (steps, live)
            if out.code is Code.OK:
                live[slot] = now + BOUND_MS
                taken.append(slot)
        elif op == "finish" and taken:
            slot = taken[n % len(taken)]
            await finish(h, kid, slot)
            live.pop(slot, None)
        elif op == "wait":
            h.clock.advance(n)
        stored = await h.redis.zrange(schema.in_flight(h.account[kid]), 0, -1, withscores=True)
        flying = [s for s, end in stored if end > h.clock.now_ms()]
        assert len(flying) <= 2
        assert len(stored) <= 2  # lapsed slots are dropped when the set fills: bounded
        assert all(end <= h.clock.now_ms() + BOUND_MS for _, end in stored)  # within the bound
        assert set(flying) == {s for s, end in live.items() if end > h.clock.now_ms()}
