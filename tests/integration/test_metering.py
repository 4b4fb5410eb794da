"""Metering against a real Redis and the Stripe stand-in: exactly once through every fault."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from devkit.standin.app import Fault, Standin
from devkit.standin.objects import World
from metering.daemon import Drainer
from metering.ledger import Ledger, Move
from metering.metrics import MeteringMetrics
from metering.retry import RateLimiter, Retrier, SendResult
from metering.sinks import MeterEventSink
from tests.support import TEST_TIERS
from tollway import schema
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.redis_client import connect
from tollway.settings import StripeSettings
from tollway.stripe_api import Stripe
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration
TABLE = parse_tiers(TEST_TIERS.replace('features = ["reports", "analytics"]\nstripe_prices = ["tollway_pro"]',
                                       'features = ["reports", "analytics"]\nstripe_prices = ["tollway_pro"]\nmeter_event = "pro_calls"'),
                    "t")  # fmt: skip
W = 60  # window length


@pytest.fixture
async def standin():
    world = World("http://127.0.0.1")
    s = Standin(world)
    server = TestServer(s.build(), host="127.0.0.1")
    await server.start_server()
    client = Stripe(
        StripeSettings(stripe_api_base=str(server.make_url("")).rstrip("/")), max_network_retries=0
    )
    yield s, client
    await client.aclose()
    await server.close()


async def no_sleep(_: float) -> None:
    return None


def drainer(redis, client, attempts: int = 6, group: int = 1000) -> Drainer:
    metrics = MeteringMetrics(CollectorRegistry())
    retrier = Retrier(RateLimiter(1000), attempts, on_retry=metrics.retries.inc, sleep=no_sleep)
    sink = MeterEventSink(client, retrier, W)
    keys = KeyStore(redis, KeyHasher())
    ledger = Ledger(redis, W, 0)
    return Drainer(keys, ledger, sink, lambda: TABLE, metrics, 25 * 86400, group=group)


async def old_window(back: int = 2) -> int:
    now = int(time.time())
    return now - now % W - back * W


async def usage(redis, key_id: str, window: int, n: int) -> None:
    await redis.hincrby(schema.usage(key_id), str(window), n)


def accepted(s: Standin, customer: str) -> int:
    return sum(
        int(e["payload"]["value"])
        for e in s.world.meter_events
        if e["payload"]["stripe_customer_id"] == customer
    )


async def test_only_closed_windows_are_taken(redis):
    """The current window stays with authz; closed ones move to the outbox with a sequence."""
    ledger = Ledger(redis, W, 0)
    now = int(time.time())
    current = now - now % W
    await usage(redis, "k1", current, 5)
    await usage(redis, "k1", current - W, 3)
    assert await ledger.move_usage("k1", "cus_1", "api_requests") == 3
    assert await redis.hgetall(schema.usage("k1")) == {str(current): "5"}
    assert await redis.hgetall(schema.ledger("cus_1", "open")) == {
        f"api_requests|{current - W}": "3"
    }
    assert await redis.hgetall(schema.outbox("k1")) == {}


async def test_a_crash_between_transfer_and_outbox_delete_does_not_double_count(redis):
    """Re-running a transfer whose outbox entry survived a crash adds nothing twice."""
    ledger = Ledger(redis, W, 0)
    w = await old_window()
    await usage(redis, "k1", w, 4)
    await ledger.move_usage("k1", "cus_1", "m")
    # Simulate the crash: the entry is back in the outbox, its transfer marker still set.
    await redis.hset(schema.outbox("k1"), f"{w}:1", 4)
    assert await ledger.move_usage("k1", "cus_1", "m") == 0
    assert await redis.hget(schema.ledger("cus_1", "open"), f"m|{w}") == "4"


async def test_late_usage_for_a_claimed_window_gets_a_new_identifier(redis):
    """Usage written back into a window already claimed is claimed again under gen 2."""
    ledger = Ledger(redis, W, 0)
    w = await old_window()
    await usage(redis, "k1", w, 2)
    await ledger.move_usage("k1", "cus_1", "m")
    _, (first,) = await ledger.claim(["cus_1"], "me", 10_000)
    assert await ledger.ack({"cus_1": [first]}, "me") == 2
    await usage(redis, "k1", w, 3)  # an outage's buffered usage, written back late
    await ledger.move_usage("k1", "cus_1", "m")
    _, (second,) = await ledger.claim(["cus_1"], "me", 10_000)
    assert (first.gen, first.value, second.gen, second.value) == (1, 2, 2, 3)
    assert first.identifier != second.identifier and len(second.identifier) <= 100


async def test_a_claim_takes_the_send_lock_and_the_ack_releases_it(redis):
    """A customer whose send lock another daemon holds is not claimed, in a claim of many;
    acknowledging releases a lock only for its holder, and then another daemon may claim."""
    ledger = Ledger(redis, W, 0)
    w = await old_window()
    for c in ("cus_1", "cus_2"):
        await usage(redis, f"k_{c}", w, 2)
    taken = await ledger.take([f"k_{c}" for c in ("cus_1", "cus_2")])
    assert await ledger.transfer([Move(t, t.source[2:], "m") for t in taken]) == 4
    held, mine = await ledger.claim(["cus_1"], "a", 10_000)
    assert held == ["cus_1"] and [p.value for p in mine] == [2]
    held, theirs = await ledger.claim(["cus_1", "cus_2"], "b", 10_000)
    assert held == ["cus_2"] and [p.customer for p in theirs] == ["cus_2"]
    assert await ledger.ack({"cus_1": []}, "b") == 0
    assert await redis.get(schema.ledger("cus_1", "lock")) == "a"
    assert await ledger.ack({"cus_1": mine}, "a") == 2
    assert await redis.get(schema.ledger("cus_1", "lock")) is None
    assert await ledger.claim(["cus_1"], "b", 10_000) == (["cus_1"], [])


async def test_a_stalled_redis_ends_the_pass_within_the_step_bound(redis_server, redis, standin):
    """metering's client bounds no reply by itself (bound_each_reply=False): each Redis step of
    a pass is bounded instead. With every node paused for 3 s, a pass fails with TimeoutError
    after its 0.3 s step bound, not after the pause; the next pass bills the usage once."""
    s, client = standin
    _, rec = await KeyStore(redis, KeyHasher()).create("free", "cus_P")
    await usage(redis, rec.key_id, await old_window(), 5)
    unbounded = connect(redis_server, timeout_s=5.0, bound_each_reply=False)
    d = drainer(unbounded, client)
    d.redis_timeout_s = 0.3
    await unbounded.ping()  # connected before the pause
    every_node = {"target_nodes": "all"} if hasattr(redis, "get_nodes") else {}  # a Cluster
    await redis.execute_command("CLIENT PAUSE", "3000", "WRITE", **every_node)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await d.drain()
    assert time.monotonic() - started < 2.5  # the step bound ended it, not the pause's end
    await asyncio.sleep(3.2)
    d.redis_timeout_s = 10.0
    await d.drain()
    assert accepted(s, "cus_P") == 5 and len(s.world.meter_events) == 1
    await unbounded.aclose()


async def test_drain_aggregates_keys_per_customer_window_and_meter(redis, standin):
    """Two keys of one customer make one event per window, named by the tier's meter_event."""
    s, client = standin
    keys = KeyStore(redis, KeyHasher())
    _, a = await keys.create("pro", "cus_A")
    _, b = await keys.create("pro", "cus_A")
    _, c = await keys.create("free", "cus_B")
    w = await old_window()
    for rec, n in ((a, 3), (b, 4), (c, 5)):
        await usage(redis, rec.key_id, w, n)
    await usage(redis, a.key_id, w - W, 1)
    result = await drainer(redis, client).drain()
    assert result.sent == {SendResult.ACCEPTED: 3}
    assert result.moved == 3 + 4 + 5 + 1  # every key's usage, counted while keys move at once
    events = sorted((e["payload"]["stripe_customer_id"], e["event_name"], e["payload"]["value"], e["timestamp"])
                    for e in s.world.meter_events)  # fmt: skip
    assert events == [("cus_A", "pro_calls", "1", w), ("cus_A", "pro_calls", "7", w + W),
                      ("cus_B", "api_requests", "5", w + W)]  # fmt: skip
    assert await redis.hgetall(schema.ledger("cus_A", "pending")) == {}
    assert await redis.hgetall(schema.ledger("cus_A", "sent")) == {
        f"pro_calls|{w}": "7",
        f"pro_calls|{w - W}": "1",
    }


@pytest.mark.parametrize(
    "fault",
    [
        Fault(path="/v1/billing/meter_events", status=500, times=3),
        Fault(path="/v1/billing/meter_events", status=429, retry_after=1, times=2),
        Fault(path="/v1/billing/meter_events", kind="reset", times=2),
        Fault(path="/v1/billing/meter_events", kind="lost", times=2),
        Fault(path="/v1/billing/meter_events", kind="delay", delay_ms=200, times=1),
    ],
    ids=["500", "429", "reset", "lost-response", "slow"],
)
async def test_every_fault_still_bills_exactly_once(redis, standin, fault):
    """5xx, 429, resets, slow and lost responses: the usage arrives exactly once."""
    s, client = standin
    _, rec = await KeyStore(redis, KeyHasher()).create("free", "cus_F")
    await usage(redis, rec.key_id, await old_window(), 9)
    s.faults.append(fault)
    d = drainer(redis, client)
    await d.drain()
    assert accepted(s, "cus_F") == 9 and fault.times == 0
    assert await redis.hgetall(schema.ledger("cus_F", "pending")) == {}
    if fault.kind != "delay":
        assert d.metrics.retries._value.get() >= 1


async def test_accepted_but_unacked_is_not_billed_twice(redis, standin):
    """If the daemon dies after Stripe accepted but before the ack, the re-send is a duplicate."""
    s, client = standin
    _, rec = await KeyStore(redis, KeyHasher()).create("free", "cus_X")
    await usage(redis, rec.key_id, await old_window(), 6)
    d = drainer(redis, client)
    await d.ledger.move_usage(rec.key_id, "cus_X", "api_requests")
    _, (p,) = await d.ledger.claim(["cus_X"], d.owner, d.lock_ms)
    assert (await d.sink.send_one(p))[0] is SendResult.ACCEPTED  # ...and then the daemon dies
    s.idempotent.clear()  # past Stripe's idempotency window: only the identifier protects us
    result = await d.drain()
    assert result.sent == {SendResult.DUPLICATE: 1}
    assert accepted(s, "cus_X") == 6 and s.world.duplicate_refusals == 1
    assert await redis.hget(schema.ledger("cus_X", "sent"), f"api_requests|{p.window}") == "6"


async def test_validation_errors_become_dead_letters_and_can_be_retried(redis, standin):
    """A 4xx refusal parks the event with Stripe's message; retry puts it back unchanged."""
    s, client = standin
    _, rec = await KeyStore(redis, KeyHasher()).create("free", "cus_D")
    await usage(redis, rec.key_id, await old_window(), 2)
    s.faults.append(Fault(path="/v1/billing/meter_events", status=400))
    d = drainer(redis, client)
    assert (await d.drain()).sent == {SendResult.DEAD: 1}
    ((identifier, letter),) = (await d.ledger.dead_letters()).items()
    assert "Injected fault" in letter["reason"] and letter["event"]["payload"]["value"] == "2"
    assert await redis.hgetall(schema.ledger("cus_D", "pending")) == {}
    assert await d.ledger.retry_dead_letter(identifier)
    assert (await d.drain()).sent == {SendResult.ACCEPTED: 1}
    assert accepted(s, "cus_D") == 2 and s.world.meter_events[0]["identifier"] == identifier


async def test_usage_older_than_35_days_is_refused_and_flagged(redis, standin):
    """Stripe refuses timestamps over 35 days old: a dead letter, not a silent loss."""
    _, client = standin
    _, rec = await KeyStore(redis, KeyHasher()).create("free", "cus_O")
    await usage(redis, rec.key_id, await old_window(36 * 24 * 60), 1)
    d = drainer(redis, client)
    assert (await d.drain()).sent == {SendResult.DEAD: 1}
    (letter,) = (await d.ledger.dead_letters()).values()
    assert "35 calendar days" in letter["reason"]


async def test_persistent_failure_keeps_usage_pending_and_ages_it(redis, standin):
    """When every attempt fails, the event stays pending, counted and aged in the metrics."""
    s, client = standin
    _, rec = await KeyStore(redis, KeyHasher()).create("free", "cus_P")
    await usage(redis, rec.key_id, await old_window(30 * 24 * 60), 4)
    s.faults.append(Fault(path="/v1/billing/meter_events", status=503, times=100))
    d = drainer(redis, client, attempts=3)
    assert (await d.drain()).sent == {SendResult.RETRY_LATER: 1}
    assert d.metrics.pending._value.get() == 1
    assert d.metrics.oldest_pending_age._value.get() > 29 * 86400
    s.faults.clear()
    await d.drain()
    assert accepted(s, "cus_P") == 4


async def test_two_daemons_at_once_never_double_send(redis, standin):
    """Two drainers racing over 40 customers, in groups of 5 (so that each finds groups the
    other holds, part or whole), bill every request once and repeat nothing."""
    s, client = standin
    keys = KeyStore(redis, KeyHasher())
    w = await old_window()
    for i in range(40):
        _, rec = await keys.create("free", f"cus_{i}")
        await usage(redis, rec.key_id, w, i + 1)
    a, b = drainer(redis, client, group=5), drainer(redis, client, group=5)
    await asyncio.gather(a.drain(), b.drain())
    await drainer(redis, client).drain()  # whatever a lease made one of them skip
    assert sum(int(e["payload"]["value"]) for e in s.world.meter_events) == sum(range(1, 41))
    assert len(s.world.meter_events) == 40 and s.world.duplicate_refusals == 0


async def test_overage_mode_reports_only_usage_past_the_quota_per_period(redis, standin):
    """report = "overage", quota 10: 15 requests over two keys in a period report exactly 5;
    the next billing period starts from zero again."""
    s, client = standin
    table = parse_tiers(
        '[tiers.hybrid]\nrequests_per_second = 10.0\nburst = 10\nmonthly_quota = 10\n'
        'over_quota = "bill"\nreport = "overage"\nmeter_event = "overage_calls"\n', "t"
    )  # fmt: skip
    keys = KeyStore(redis, KeyHasher())
    w = await old_window(5)
    period = {
        "period_start": str(w - 3 * W),
        "period_end": str(w + 3 * W),
    }  # windows w..w+2W inside
    recs = []
    for _ in range(2):
        _, rec = await keys.create("hybrid", "cus_H")
        await redis.hset(schema.key_record(rec.key_id, rec.account), mapping=period)
        recs.append(rec)
    await usage(redis, recs[0].key_id, w, 4)
    await usage(redis, recs[1].key_id, w, 3)
    await usage(redis, recs[0].key_id, w + W, 8)
    # The next period: 6 of its 10 included requests, nothing to bill.
    await usage(redis, recs[1].key_id, w + 3 * W, 6)
    metrics = MeteringMetrics(CollectorRegistry())
    sink = MeterEventSink(client, Retrier(RateLimiter(1000), 3, sleep=no_sleep), W)
    await Drainer(keys, Ledger(redis, W, 0), sink, lambda: table, metrics, 1e9).drain()
    # The period's overage is exact (15 - 10 = 5); which windows carry it follows drain order.
    events = s.world.meter_events
    assert {e["event_name"] for e in events} == {"overage_calls"}
    assert sum(int(e["payload"]["value"]) for e in events) == 5
    assert all(w - 3 * W < e["timestamp"] <= w + 3 * W for e in events)
    assert await redis.hgetall(schema.ledger("cus_H", "period")) == {
        f"overage_calls|{w - 3 * W}": "15",
        f"overage_calls|{w + 3 * W}": "6",
    }


def stream_drainer(redis, client, attempts: int = 4):
    from metering.stream import StreamSink

    metrics = MeteringMetrics(CollectorRegistry())
    retrier = Retrier(RateLimiter(1000), attempts, on_retry=metrics.retries.inc, sleep=no_sleep)
    stream = StreamSink(client, retrier, W, fallback=MeterEventSink(client, retrier, W))
    keys = KeyStore(redis, KeyHasher())
    d = Drainer(keys, Ledger(redis, W, 0), stream, lambda: TABLE, metrics, 25 * 86400)
    return d, stream


async def seed_customers(redis, n: int, per: int = 2) -> int:
    keys = KeyStore(redis, KeyHasher())
    w = await old_window()
    for i in range(n):
        _, rec = await keys.create("free", f"cus_s{i}")
        await usage(redis, rec.key_id, w, per)
    return n * per


async def test_stream_mode_sends_100_events_per_request(redis, standin):
    """250 customers' usage goes out in 3 stream requests over one session, exactly once."""
    s, client = standin
    total = await seed_customers(redis, 250)
    d, stream = stream_drainer(redis, client)
    calls = []
    original = stream.send

    async def counting(batch):
        calls.append(len(batch))
        return await original(batch)

    stream.send = counting
    result = await d.drain()
    assert calls == [100, 100, 50] and stream.sessions == 1
    assert result.sent == {SendResult.ACCEPTED: 250}
    assert sum(int(e["payload"]["value"]) for e in s.world.meter_events) == total


async def test_stream_renews_an_expired_session(redis, standin):
    """A session token that stops working (401) is replaced and the batch goes through."""
    s, client = standin
    total = await seed_customers(redis, 3)
    d, stream = stream_drainer(redis, client)
    await stream._session()
    s.sessions.clear()  # Stripe forgot the token early
    await d.drain()
    assert stream.sessions == 2
    assert sum(int(e["payload"]["value"]) for e in s.world.meter_events) == total


async def test_stream_batch_refused_with_4xx_falls_back_to_v1(redis, standin):
    """A 4xx on the whole batch is retried event by event through v1; nothing is lost."""
    s, client = standin
    total = await seed_customers(redis, 5)
    s.faults.append(Fault(path="/v2/billing/meter_event_stream", status=400))
    d, _ = stream_drainer(redis, client)
    result = await d.drain()
    assert result.sent == {SendResult.ACCEPTED: 5}
    assert sum(int(e["payload"]["value"]) for e in s.world.meter_events) == total


async def test_stream_survives_lost_responses_and_5xx(redis, standin):
    """A stream request whose answer is lost, or that fails with 5xx, is re-sent without doubling."""
    s, client = standin
    total = await seed_customers(redis, 120)
    s.faults += [Fault(path="/v2/billing/meter_event_stream", kind="lost"),
                 Fault(path="/v2/billing/meter_event_stream", status=503)]  # fmt: skip
    d, _ = stream_drainer(redis, client)
    await d.drain()
    assert sum(int(e["payload"]["value"]) for e in s.world.meter_events) == total
    assert len({e["identifier"] for e in s.world.meter_events}) == 120


async def test_usage_without_owner_is_parked_once_and_billed_once_on_retry(redis, standin, caplog):
    """Usage whose source no account or key owns (say, spooled for another store and loaded
    by hand): one dead letter per source and window, said once however many passes run; once
    the owner exists, retrying them bills the usage exactly once."""
    s, client = standin
    d = drainer(redis, client)
    w = await old_window()
    await usage(redis, "sub_orphan", w, 5)
    await usage(redis, "sub_orphan", w - W, 2)
    for _ in range(3):
        await d.drain()
    orphans = {i: r for i, r in (await d.ledger.dead_letters()).items()
               if r.get("kind") == "orphan_usage"}  # fmt: skip
    assert sorted((r["window"], r["units"]) for r in orphans.values()) == [(w - W, 2), (w, 5)]
    assert caplog.text.count("usage_without_owner_parked") == 1
    assert await redis.hgetall(schema.outbox("sub_orphan")) == {}
    keys = KeyStore(redis, KeyHasher())
    await keys.sync_account("sub_orphan", "cus_O", 1, {"tier": "free", "status": "active"})
    for identifier in orphans:
        assert await d.ledger.retry_dead_letter(identifier)
    await d.drain()
    await d.drain()
    assert accepted(s, "cus_O") == 7
    assert await d.ledger.dead_letters() == {}
