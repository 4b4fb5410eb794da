"""``/v1/usage`` and ``/v1/audit``: the numbers ``tollway usage show`` and the portal's chart
show (tollway/usage_report.py), and the audit log ``tollway audit`` prints."""

from __future__ import annotations

from api.errors import invalid
from api.models import (
    AuditEntry,
    AuditList,
    AuditQuery,
    KeyUsage,
    Usage,
    UsageDay,
    UsagePeriod,
    UsageQuery,
    UsageWindow,
)
from api.operations import Call, Operation
from tollway.accounts import AccountView
from tollway.tiers import TierTable
from tollway.usage_report import (
    DAY_S,
    Row,
    carried,
    customer_windows,
    per_day,
    per_key,
    units_between,
)

# The days usage lists: this monthly period and the last.
DAYS = 62


async def usage(call: Call) -> Usage:
    """A customer's usage, or one account's: the customer's windows and days (its accounts
    share them, as Stripe bills the customer), each account's this period and the last, and
    each key's this period (only the account's keys, when one is asked for)."""
    q: UsageQuery = call.query
    if (q.customer is None) == (q.account is None):
        raise invalid("give customer or account (one of them)", "customer")
    keys = call.services.keys
    accounts = call.services.accounts(call.actor)
    now = call.services.clock.now()
    if q.account is not None:
        views = [await accounts.show(q.account)]  # NotFound: 404
        customer = views[0].customer or q.account
        per = [(r, n) for r, n in await per_key(keys, customer, now) if r.account == q.account]
    else:
        customer = q.customer or ""
        per = await per_key(keys, customer, now)  # every key of the customer, with its account
        views = [await accounts.show(a) for a in sorted({r.account for r, _ in per})]
    tiers = call.services.tiers()
    rows = await customer_windows(keys, customer, tiers)
    windows = []
    for field in sorted(rows, key=lambda f: (f.split("|")[0], int(f.split("|")[1]))):
        meter, window = field.split("|")
        r = rows[field]
        windows.append(UsageWindow(meter=meter, window_start=int(window), **r))
    window_s = call.services.engine.settings.usage_window_s
    start = (now // DAY_S - (DAYS - 1)) * DAY_S  # today and the 61 days before
    days = [
        UsageDay(meter=meter, day=day, units=n)
        for meter in sorted({w.meter for w in windows})
        for day, n in per_day(rows, meter, start, now + 1)
    ]
    return Usage(
        customer=customer,
        account=q.account,
        windows=windows,
        days=days,
        periods=[p for v in views for p in _periods(v, rows, tiers, now, window_s)],
        keys=[KeyUsage(key_id=r.key_id, account=r.account, this_period=n) for r, n in per],
        carried=await carried(keys, customer),
    )


def _periods(
    view: AccountView, rows: dict[str, Row], tiers: TierTable, now: int, window_s: int
) -> list[UsagePeriod]:
    """The account's this and last billing period, for each meter of its tier."""
    start, end = view.period(now)
    last = start - (end - start)
    tier = tiers.get(view.tier)
    meters = [tiers.meter_event(view.tier)] + (
        [tier.usage_meter] if tier and tier.usage_meter else []
    )
    return [
        UsagePeriod(
            account=view.account,
            meter=meter,
            period=name,
            start=a,
            end=b,
            units=units_between(rows, meter, a, b, window_s),
        )
        for meter in meters
        for name, a, b in (("this", start, end), ("last", last, start))
    ]


async def audit(call: Call) -> AuditList:
    q: AuditQuery = call.query
    entries = await call.services.audit.entries(
        target=q.target or "",
        actor=q.actor or "",
        since=q.since or 0,
        until=q.until or 0,
        limit=q.limit + 1,
        before=q.starting_after or "",
    )
    data = [AuditEntry(**e.public()) for e in entries[: q.limit]]
    return AuditList(data=data, has_more=len(entries) > q.limit)


OPERATIONS = [
    Operation(
        "GET",
        "/v1/usage",
        "get_usage",
        "usage:read",
        "A customer's or an account's usage: per meter and window (counted, pending, sent), per day, this billing period and the last, per key",
        usage,
        Usage,
        query=UsageQuery,
        errors=(400, 404),
    ),
    Operation(
        "GET",
        "/v1/audit",
        "list_audit",
        "audit:read",
        "Changes to keys, accounts and tokens, newest first, by target, actor and time",
        audit,
        AuditList,
        query=AuditQuery,
        errors=(400,),
    ),
]
