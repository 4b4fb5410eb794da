"""The access-log receiver against a real Redis: refunds and amounts, each request once.

Entries are real ``HTTPAccessLogEntry`` messages, as Envoy sends them; the stamps are made by
the same Stamper authz uses. The drain is the real one (Ledger, Drainer) into the stand-in.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from envoy.data.accesslog.v3 import accesslog_pb2
from prometheus_client import CollectorRegistry

from metering.ledger import REFUND, Ledger
from metering.metrics import ReceiverMetrics
from metering.receiver import Receiver
from tests.integration.test_metering import W, accepted, drainer
from tests.support import TEST_TIERS
from tollway import schema
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.tiers import parse_tiers
from tollway.usage_stamp import METADATA_KEY, NAMESPACE, Stamper

pytestmark = pytest.mark.integration
TIERS = parse_tiers(
    TEST_TIERS
    + """
[tiers.tokens]
requests_per_second = 1000.0
burst = 1000
monthly_quota = 100
over_quota = "block"
usage_meter = "tokens"
stripe_prices = ["tollway_tokens"]
""",
    "t",
)
STAMPER = Stamper("test-secret")


def entry(request_id: str, stamp: str, code: int = 200, amount: str | None = None,
          flags: tuple[str, ...] = (), details: str = "via_upstream") -> Any:  # fmt: skip
    e = accesslog_pb2.HTTPAccessLogEntry()
    e.request.request_id = request_id
    if code:
        e.response.response_code.value = code
    e.response.response_code_details = details
    for f in flags:
        if f == "unauthorized_details":  # a message: ext_authz refused or failed
            e.common_properties.response_flags.unauthorized_details.SetInParent()
        else:
            setattr(e.common_properties.response_flags, f, True)
    md = e.common_properties.metadata.filter_metadata
    if stamp:
        md[NAMESPACE].fields[METADATA_KEY].string_value = stamp
    if amount is not None:
        md["tollway"].fields["usage"].string_value = amount
    return e


class Count:
    """A key counted like check.lua does: usage window, quota and the key's share."""

    def __init__(self, redis: Any, account: str, key_id: str) -> None:
        self.redis, self.account, self.key_id = redis, account, key_id

    async def request(self, at: int) -> None:
        state = schema.account_state(self.account)
        await self.redis.hincrby(schema.usage(self.account), str(at - at % W), 1)
        await self.redis.hset(state, mapping={"q_period": at - 3600, f"p:{self.key_id}": at - 3600})
        await self.redis.hincrby(state, "q_used", 1)
        await self.redis.hincrby(state, f"n:{self.key_id}", 1)

    def stamp(self, at: int, tier: str = "tokens") -> str:
        """A stamp as authz signs one for a counted request: a nonce of its own each time."""
        return STAMPER.sign(self.account, self.key_id, tier, at)


@pytest.fixture
async def setup(redis):
    _, record = await KeyStore(redis, KeyHasher()).create("tokens", "cus_rx")
    metrics = ReceiverMetrics(CollectorRegistry())
    receiver = Receiver(redis, lambda: TIERS, STAMPER, metrics, W, 900, 1000)
    return receiver, Count(redis, record.account, record.key_id), metrics


async def usage_of(redis, account: str) -> dict[str, str]:
    return dict(await redis.hgetall(schema.usage(account)))


async def test_a_failed_call_is_refunded_once_and_its_quota_given_back(redis, setup):
    receiver, count, _ = setup
    now = int(time.time())
    for _ in range(3):
        await count.request(now)
    failed = entry("rid-1", count.stamp(now), code=503)
    await receiver.entries([failed])
    await receiver.entries([failed, failed])  # Envoy sends it again, or a second receiver does
    window = str(now - now % W)
    assert (await usage_of(redis, count.account))[window] == "2"
    state = await redis.hgetall(schema.account_state(count.account))
    assert state["q_used"] == "2" and state[f"n:{count.key_id}"] == "2"


async def test_a_refund_gives_back_its_place_under_the_day_s_and_hour_s_caps(redis, setup):
    """While the window the request counted in is current; a window since ended is left."""
    receiver, count, _ = setup
    now = int(time.time())
    for _ in range(3):
        await count.request(now)
    state = schema.account_state(count.account)
    day, hour = now - now % 86400, now - now % 3600
    await redis.hset(state, mapping={"d_start": day, "d_used": 3, "h_start": hour - 3600,
                                     "h_used": 3})  # fmt: skip
    await receiver.entries([entry("rid-1", count.stamp(now), code=503)])
    got = await redis.hmget(state, "d_used", "h_used")
    assert got == ["2", "3"]


async def test_billed_calls_change_nothing_and_amounts_go_to_the_usage_meter(redis, setup):
    receiver, count, metrics = setup
    now = int(time.time())
    for _ in range(4):
        await count.request(now)
    await receiver.entries([
        entry("ok-1", count.stamp(now)),
        entry("ok-2", count.stamp(now), code=404),
        entry("ok-3", ok3 := count.stamp(now), amount="120"),
        entry("ok-3", ok3, amount="120"),  # a replay
        entry("ok-4", count.stamp(now), code=500, amount="50"),  # failed: no amount
    ])  # fmt: skip
    window = now - now % W
    assert await usage_of(redis, count.account) == {str(window): "3", f"a:{window}": "120"}
    assert metrics.entries.labels("duplicate")._value.get() == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("-5", "negative"), ("1.5", "not_integer"), ("abc", "not_integer"), ("1001", "too_large"),
     ("7,7", "repeated")],
)  # fmt: skip
async def test_a_bad_amount_is_ignored_and_counted(redis, setup, raw, reason):
    receiver, count, metrics = setup
    now = int(time.time())
    await count.request(now)
    await receiver.entries([entry("bad-1", count.stamp(now), amount=raw)])
    assert f"a:{now - now % W}" not in await usage_of(redis, count.account)
    assert metrics.bad_amounts.labels(reason)._value.get() == 1


async def test_entries_of_a_forged_stream_change_nothing(redis, setup):
    receiver, count, metrics = setup
    now = int(time.time())
    await count.request(now)
    before = await usage_of(redis, count.account)
    real = count.stamp(now)
    forged = Stamper("not-the-secret").sign(count.account, count.key_id, "tokens", now)
    other_window = real.replace(f"|{now}|", f"|{now - W}|")
    await receiver.entries([
        entry("rid-9", forged, code=500),  # signed with another secret
        entry("rid-9", other_window, code=500),  # a real stamp, edited
        entry("rid-10", real.replace("|", "0|", 1), code=500),  # a real stamp, another nonce
        entry("rid-11", "", code=500),  # no stamp: authz did not count it
        entry("rid-12", count.stamp(now - 1000), code=500),  # older than max age
    ])  # fmt: skip
    assert await usage_of(redis, count.account) == before
    assert metrics.entries.labels("forged")._value.get() == 3
    assert metrics.entries.labels("stale")._value.get() == 1


async def test_the_client_chosen_request_id_does_not_change_what_is_billed(redis, setup):
    """Entries with one fixed request id, a malformed one, a 150-character one or none each
    apply their own reported amount once: the receiver applies stamps by authz's nonce."""
    receiver, count, _ = setup
    now = int(time.time())
    ids = ["fixed-id"] * 5 + ["not a uuid!", "x" * 150, ""]
    for _ in ids:
        await count.request(now)
    entries = [entry(rid, count.stamp(now), amount="100") for rid in ids]
    await receiver.entries(entries)
    await receiver.entries(entries[:2])  # Envoy's stream retry replays some: applied once
    assert (await usage_of(redis, count.account))[f"a:{now - now % W}"] == str(100 * len(ids))


async def test_a_refund_after_its_window_was_sent_comes_off_the_next_one(redis, setup, standin):
    receiver, count, _ = setup
    s, client, _ = standin
    past = int(time.time()) - 3 * W
    await count.request(past)
    await count.request(past)
    d = drainer(redis, client)
    d.tiers = lambda: TIERS
    await d.drain()
    assert accepted(s, "cus_rx") == 2
    await receiver.entries([entry("late-1", count.stamp(past), code=502)])
    await d.drain()  # no later window yet: carried
    assert (await usage_of(redis, count.account)).get("carry") == "1"
    later = past + W
    for _ in range(3):
        await count.request(later)
    await d.drain()
    assert accepted(s, "cus_rx") == 2 + 3 - 1


async def test_a_refund_with_no_later_window_becomes_a_dead_letter(redis, setup, standin):
    receiver, count, _ = setup
    _, client, _ = standin
    past = int(time.time()) - 3 * W
    await count.request(past)
    d = drainer(redis, client)
    d.tiers = lambda: TIERS
    await d.drain()
    await receiver.entries([entry("late-2", count.stamp(past), code=502)])
    d.ledger = Ledger(redis, W, 0, carry_s=0)
    await d.drain()
    await d.drain()  # parked once
    letters = await d.ledger.dead_letters()
    assert [r["kind"] for r in letters.values()] == [REFUND]
    (record,) = letters.values()
    assert record["requests"] == 1 and record["customer"] == "cus_rx"
    assert "carry" not in await usage_of(redis, count.account)
    with pytest.raises(ValueError, match="credit the customer"):
        await d.ledger.retry_dead_letter(next(iter(letters)))


async def test_envoys_own_503_refunds_the_check_authz_noted_as_unheard(redis, setup, monkeypatch):
    receiver, count, metrics = setup
    monkeypatch.setattr("metering.receiver.UNHEARD_WAITS_S", (0.0, 0.05, 0.1))
    now = int(time.time())
    await count.request(now)
    await count.request(now)
    timeout = entry("slow-1", "", code=503, flags=("unauthorized_details",),
                    details="ext_authz_error")  # fmt: skip
    await receiver.entries([timeout])
    # authz, stalled, notes the check after Envoy logged its 503.
    await redis.set(schema.unheard("slow-1"), count.stamp(now))
    for _ in range(50):
        if not receiver._looking:
            break
        await asyncio.sleep(0.02)
    assert (await usage_of(redis, count.account))[str(now - now % W)] == "1"
    assert metrics.entries.labels("unheard_refunded")._value.get() == 1
    # An ext_authz 503 with nothing noted (authz never counted it) changes nothing.
    await receiver.entries([entry("slow-2", "", code=503, flags=("unauthorized_details",),
                                  details="ext_authz_error")])  # fmt: skip
    assert receiver._looking  # it is being looked for; wait until the looking is over
    for _ in range(250):
        if not receiver._looking:
            break
        await asyncio.sleep(0.02)
    assert not receiver._looking
    assert (await usage_of(redis, count.account))[str(now - now % W)] == "1"
    assert metrics.entries.labels("unheard_refunded")._value.get() == 1
