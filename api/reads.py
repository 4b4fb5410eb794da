"""``/v1/usage`` and ``/v1/audit``: the numbers ``tollway usage show`` and the portal's chart
show (tollway/usage_report.py), and the audit log ``tollway audit`` prints."""

from __future__ import annotations

from api.models import (
    AuditEntry,
    AuditList,
    AuditQuery,
    KeyUsage,
    Usage,
    UsageDay,
    UsageQuery,
    UsageWindow,
)
from api.operations import Call, Operation
from tollway.usage_report import DAY_S, carried, customer_windows, per_day, per_key

# The days usage lists: this monthly period and the last.
DAYS = 62


async def usage(call: Call) -> Usage:
    q: UsageQuery = call.query
    keys = call.services.keys
    rows = await customer_windows(keys, q.customer, call.services.tiers())
    windows = []
    for field in sorted(rows, key=lambda f: (f.split("|")[0], int(f.split("|")[1]))):
        meter, window = field.split("|")
        r = rows[field]
        windows.append(UsageWindow(meter=meter, window_start=int(window), **r))
    now = call.services.clock.now()
    per = await per_key(keys, q.customer, now)
    start = (now // DAY_S - (DAYS - 1)) * DAY_S  # today and the 61 days before
    days = [
        UsageDay(meter=meter, day=day, units=n)
        for meter in sorted({w.meter for w in windows})
        for day, n in per_day(rows, meter, start, now + 1)
    ]
    return Usage(
        customer=q.customer,
        windows=windows,
        days=days,
        keys=[KeyUsage(key_id=r.key_id, account=r.account, this_period=n) for r, n in per],
        carried=await carried(keys, q.customer),
    )


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
        "A customer's usage per meter and window (counted, pending, sent) and per key",
        usage,
        Usage,
        query=UsageQuery,
        errors=(400,),
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
