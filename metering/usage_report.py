"""What a customer's usage is doing: counted (not yet moved on), pending, and sent to Stripe.

The one read of metering's state for people: ``tollway usage show`` and ``tollway reconcile``
use it. Key records are read through the KeyStore, usage and the ledger through the schema.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from metering.ledger import Ledger, Period
from tollway import schema
from tollway.records import KeyRecord
from tollway.store import KeyNotFound, KeyStore
from tollway.tiers import TierTable

Row = dict[str, int]  # {"counting", "pending", "sent"}


async def unsent_usage(keys: KeyStore, customer: str, tiers: TierTable) -> dict[str, int]:
    """Usage of the customer's accounts (and legacy keys) not yet moved to the ledger, by
    "<meter>|<window>". A legacy key migrated into its account may still hold usage of its
    own until metering drains it, so both are read."""
    redis: Any = keys.redis
    out: dict[str, int] = defaultdict(int)
    sources: dict[str, str] = {}  # usage source -> tier
    for key_id in await keys.owned(customer):
        try:
            record = await keys.get(key_id)
        except KeyNotFound:
            continue
        sources[key_id] = record.tier
        sources.setdefault(record.account, record.tier)
    for source, tier in sorted(sources.items()):
        t = tiers.get(tier)
        meter = t.meter_event if t else "api_requests"
        for window, n in (await redis.hgetall(schema.usage(source))).items():
            out[f"{meter}|{window}"] += int(n)
        for entry, n in (await redis.hgetall(schema.outbox(source))).items():
            out[f"{meter}|{entry.split(':', 1)[0]}"] += int(n)
    return out


async def customer_windows(
    keys: KeyStore, ledger: Ledger, customer: str, tiers: TierTable
) -> dict[str, Row]:
    """ "<meter>|<window>" -> {"counting", "pending", "sent"}."""
    rows: dict[str, Row] = defaultdict(lambda: {"counting": 0, "pending": 0, "sent": 0})
    for field, n in (await unsent_usage(keys, customer, tiers)).items():
        rows[field]["counting"] += n
    async for state, field, n in ledger.customer_view(customer):
        meter, window = field.split("|")[:2]
        rows[f"{meter}|{window}"]["sent" if state == "sent" else "pending"] += n
    return rows


async def per_key(keys: KeyStore, customer: str, now: int) -> list[tuple[KeyRecord, int]]:
    """Each of the customer's keys with the requests it made this billing period (its share of
    its account's quota use, kept by check.lua). A legacy key's count is its own quota use."""
    redis: Any = keys.redis
    out = []
    for key_id in await keys.owned(customer):
        try:
            record, _, account = await keys.find(key_id)
        except KeyNotFound:
            continue
        start = Period(record.period_start, record.period_end).start_for(now)
        if account:
            n, period, a_start, a_end = await redis.hmget(
                schema.account_state(account), f"n:{key_id}", f"p:{key_id}", "period_start",
                "period_end",
            )  # fmt: skip
            if a_start and a_end:  # the account's period is the one its keys count in
                start = Period(int(a_start), int(a_end)).start_for(now)
        else:
            period, n = await redis.hmget(schema.legacy_state(key_id), "q_period", "q_used")
        out.append((record, int(n or 0) if int(period or -1) == start else 0))
    return sorted(out, key=lambda rn: (rn[0].account, rn[0].created, rn[0].key_id))
