"""What a customer's usage is doing: counted (not yet moved on), pending, and sent to Stripe.

The one read of metering's state for people: ``tollway usage show``, ``tollway reconcile``
and the portal's usage chart use it (so it is in the kernel). Key records are read through
the KeyStore, usage and the ledger through the schema (metering/ledger.py writes them).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from tollway import schema
from tollway.key_store import KeyStore
from tollway.records import KeyRecord, Period
from tollway.tiers import TierTable

Row = dict[str, int]  # {"counting", "pending", "sent"}
DAY_S = 86_400


async def _sources(keys: KeyStore, customer: str) -> dict[str, str]:
    """The customer's usage sources -> tier: its accounts, and its keys' ids (usage an authz
    process counted while it did not know the key's account, until metering drains it)."""
    sources: dict[str, str] = {}
    for record in await keys.records_of(customer):
        sources[record.key_id] = record.tier
        sources.setdefault(record.account, record.tier)
    return sources


async def unsent_usage(keys: KeyStore, customer: str, tiers: TierTable) -> dict[str, int]:
    """Usage of the customer's usage sources not yet moved to the ledger, by
    "<meter>|<window>": requests under the tier's meter_event, the amounts the upstream
    reported ("a:<window>") under its usage_meter."""
    redis: Any = keys.redis
    out: dict[str, int] = defaultdict(int)
    for source, tier in sorted((await _sources(keys, customer)).items()):
        t = tiers.get(tier)
        meter = tiers.meter_event(tier)
        amounts = (t.usage_meter if t else "") or "amounts"
        fields = dict(await redis.hgetall(schema.usage(source)))
        fields.update(await redis.hgetall(schema.outbox(source)))
        for field, n in fields.items():
            if field.startswith("a:"):
                out[f"{amounts}|{field[2:].split(':', 1)[0]}"] += int(n)
            elif field[:1].isdigit():  # not the refund carry (carried())
                out[f"{meter}|{field.split(':', 1)[0]}"] += int(n)
    return out


async def carried(keys: KeyStore, customer: str) -> int:
    """Refunded requests waiting to come off a later window of the customer's accounts."""
    redis: Any = keys.redis
    total = 0
    for source in await _sources(keys, customer):
        total += int(await redis.hget(schema.usage(source), "carry") or 0)
    return total


async def customer_windows(keys: KeyStore, customer: str, tiers: TierTable) -> dict[str, Row]:
    """ "<meter>|<window>" -> {"counting", "pending", "sent"}."""
    redis: Any = keys.redis
    rows: dict[str, Row] = defaultdict(lambda: {"counting": 0, "pending": 0, "sent": 0})
    for field, n in (await unsent_usage(keys, customer, tiers)).items():
        rows[field]["counting"] += n
    # The ledger's open (transferred, not yet claimed), pending and sent hashes.
    for state in ("open", "pending", "sent"):
        for field, n in (await redis.hgetall(schema.ledger(customer, state))).items():
            meter, window = str(field).split("|")[:2]
            rows[f"{meter}|{window}"]["sent" if state == "sent" else "pending"] += int(n)
    return rows


def per_day(rows: dict[str, Row], meter: str, start: int, end: int) -> list[tuple[int, int]]:
    """(UTC day's start, epoch s; units) for each day of [start, end) up to today, from
    ``meter``'s windows in ``rows`` (``customer_windows``), counted whatever their stage
    (counting, pending or sent); a window that began just before ``start`` counts in its day.
    What the portal's chart draws and the management API's usage lists."""
    first = start // DAY_S
    last = (max(start + 1, min(end, int(time.time()) + 1)) - 1) // DAY_S
    days: Counter[int] = Counter()
    for field, row in rows.items():
        name, window = field.split("|", 1)
        if name == meter and window.isdigit() and first <= int(window) // DAY_S <= last:
            days[int(window) // DAY_S] += row["counting"] + row["pending"] + row["sent"]
    return [(d * DAY_S, days[d]) for d in range(first, last + 1)]


def units_between(rows: dict[str, Row], meter: str, start: int, end: int, window_s: int) -> int:
    """``meter``'s units in the windows that ended in [start, end), whatever their stage: an
    account's use of a billing period as Stripe bills it (a window's meter event is stamped
    with its end, metering/sinks.py; periods begin at any second, not at a day's start)."""
    total = 0
    for field, row in rows.items():
        name, window = field.split("|", 1)
        if name == meter and window.isdigit() and start <= int(window) + window_s < end:
            total += row["counting"] + row["pending"] + row["sent"]
    return total


async def per_key(keys: KeyStore, customer: str, now: int) -> list[tuple[KeyRecord, int]]:
    """Each of the customer's keys with the requests it made this billing period (its share of
    its account's quota use, kept by check.lua)."""
    redis: Any = keys.redis
    out = []
    for record in await keys.records_of(customer):
        key_id, account = record.key_id, record.account
        start = Period(record.period_start, record.period_end).start_for(now)
        n, period, a_start, a_end = await redis.hmget(
            schema.account_state(account),
            f"n:{key_id}",
            f"p:{key_id}",
            "period_start",
            "period_end",
        )
        if a_start and a_end:  # the account's period is the one its keys count in
            start = Period(int(a_start), int(a_end)).start_for(now)
        out.append((record, int(n or 0) if int(period or -1) == start else 0))
    return sorted(out, key=lambda rn: (rn[0].account, rn[0].created, rn[0].key_id))
