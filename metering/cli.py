"""Operator commands for usage and billing.

    tollway usage show --customer ID            counted, pending and sent, per window and total
    tollway metering dead-letters [list|retry ID|drop ID]
    tollway reconcile --customer ID --since DATE  tollway's totals against Stripe's summaries

reconcile exits 1 if what Stripe has differs from what tollway has sent (drift); usage not yet
sent is shown apart, since it is expected to be in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import stripe

from metering.ledger import Ledger
from tollway import schema
from tollway.redis_client import connect
from tollway.settings import MeteringSettings
from tollway.stripe_api import Stripe
from tollway.tiers import load_tiers


class CliError(Exception):
    """A failure reported as one line with exit code 1."""


async def unsent_usage(redis: Any, customer: str, tiers: Any) -> dict[str, int]:
    """Usage of the customer's keys not yet moved to the ledger, by "<meter>|<window>"."""
    out: dict[str, int] = defaultdict(int)
    for key_id in sorted(await redis.smembers(schema.owned_keys(customer))):
        tier = await redis.hget(schema.key_record(key_id), "tier")
        t = tiers.get(tier or "")
        meter = t.meter_event if t else "api_requests"
        for window, n in (await redis.hgetall(schema.key_usage(key_id))).items():
            out[f"{meter}|{window}"] += int(n)
        for entry, n in (await redis.hgetall(schema.outbox(key_id))).items():
            out[f"{meter}|{entry.split(':', 1)[0]}"] += int(n)
    return out


async def customer_windows(
    redis: Any, ledger: Ledger, customer: str, tiers: Any
) -> dict[str, dict[str, int]]:
    """ "<meter>|<window>" -> {"counting", "pending", "sent"}."""
    rows: dict[str, dict[str, int]] = defaultdict(lambda: {"counting": 0, "pending": 0, "sent": 0})
    for field, n in (await unsent_usage(redis, customer, tiers)).items():
        rows[field]["counting"] += n
    async for state, field, n in ledger.customer_view(customer):
        meter, window = field.split("|")[:2]
        rows[f"{meter}|{window}"]["sent" if state == "sent" else "pending"] += n
    return rows


def _when(window: str) -> str:
    return datetime.fromtimestamp(int(window), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def usage_show(settings: MeteringSettings, customer: str) -> int:
    redis = connect(settings.redis_url, timeout_s=5.0)
    try:
        rows = await customer_windows(redis, Ledger(redis, settings.usage_window_s, 0), customer,
                                      load_tiers(settings.tiers))  # fmt: skip
    finally:
        await redis.aclose()
    total = {"counting": 0, "pending": 0, "sent": 0}
    print(f"{'meter':<20} {'window start':<21} {'counting':>9} {'pending':>8} {'sent':>8}")
    for field in sorted(rows, key=lambda f: (f.split("|")[0], int(f.split("|")[1]))):
        meter, window = field.split("|")
        r = rows[field]
        print(
            f"{meter:<20} {_when(window):<21} {r['counting']:>9} {r['pending']:>8} {r['sent']:>8}"
        )
        for k in total:
            total[k] += r[k]
    print(f"{'total':<42} {total['counting']:>9} {total['pending']:>8} {total['sent']:>8}")
    return 0


async def dead_letters(settings: MeteringSettings, action: str, identifier: str | None) -> int:
    redis = connect(settings.redis_url, timeout_s=5.0)
    ledger = Ledger(redis, settings.usage_window_s, 0)
    try:
        if action == "list":
            for ident, rec in sorted((await ledger.dead_letters()).items()):
                print(json.dumps({"id": ident, **rec}))
            return 0
        if identifier is None:
            raise CliError(f"dead-letters {action} needs an id")
        act = ledger.retry_dead_letter if action == "retry" else ledger.drop_dead_letter
        try:
            done = await act(identifier)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if not done:
            raise CliError(f"no dead letter {identifier}")
        print(f"{action}: {identifier}", file=sys.stderr)
        return 0
    finally:
        await redis.aclose()


async def reconcile(settings: MeteringSettings, customer: str, since: int) -> int:
    redis = connect(settings.redis_url, timeout_s=5.0)
    client = Stripe(settings)
    try:
        rows = await customer_windows(redis, Ledger(redis, settings.usage_window_s, 0), customer,
                                      load_tiers(settings.tiers))  # fmt: skip
        by_meter: dict[str, dict[str, int]] = defaultdict(
            lambda: {"counting": 0, "pending": 0, "sent": 0}
        )
        for field, r in rows.items():
            meter, window = field.split("|")
            if int(window) >= since:
                for k, v in r.items():
                    by_meter[meter][k] += v
        meters = {m.event_name: m.id for m in (await client.v1.billing.meters.list_async()).data}
        end = int(time.time()) + 2 * settings.usage_window_s + 3600
        drift_total = 0
        print(f"{'meter':<20} {'counted':>9} {'unsent':>8} {'sent':>8} {'stripe':>8} {'drift':>7}")
        for meter, r in sorted(by_meter.items()):
            if meter not in meters:
                raise CliError(f"Stripe has no meter with event_name {meter!r}")
            summaries = await client.v1.billing.meters.event_summaries.list_async(
                meters[meter], {"customer": customer, "start_time": since, "end_time": end}
            )
            in_stripe = int(sum(s.aggregated_value for s in summaries.data))
            drift = in_stripe - r["sent"]
            drift_total += abs(drift)
            counted = r["counting"] + r["pending"] + r["sent"]
            unsent = r["counting"] + r["pending"]
            print(f"{meter:<20} {counted:>9} {unsent:>8} {r['sent']:>8} {in_stripe:>8} {drift:>7}")
        return 1 if drift_total else 0
    except stripe.StripeError as exc:
        raise CliError(f"Stripe: {exc.user_message or exc}") from None
    finally:
        await client.aclose()
        await redis.aclose()


def add_commands(sub: Any, store_flags: Any) -> None:
    usage = sub.add_parser("usage", help="usage per customer").add_subparsers(
        dest="usage_command", required=True
    )
    show = usage.add_parser("show", help="counted, pending and sent, per window")
    show.add_argument("--customer", required=True)
    store_flags(show)
    show.set_defaults(run=lambda a, s: usage_show(s, a.customer))

    letters = sub.add_parser("metering", help="metering administration").add_subparsers(
        dest="metering_command", required=True
    )
    dl = letters.add_parser("dead-letters", help="meter events Stripe refused")
    dl.add_argument("action", nargs="?", default="list", choices=["list", "retry", "drop"])
    dl.add_argument("id", nargs="?")
    store_flags(dl)
    dl.set_defaults(run=lambda a, s: dead_letters(s, a.action, a.id))

    rec = sub.add_parser("reconcile", help="compare tollway's totals with Stripe's")
    rec.add_argument("--customer", required=True)
    rec.add_argument("--since", required=True, help="a date, YYYY-MM-DD (UTC)")
    rec.add_argument("--stripe-api-base", help="Stripe API base URL (TOLLWAY_STRIPE_API_BASE)")
    store_flags(rec)
    rec.set_defaults(run=lambda a, s: reconcile(s, a.customer, _date(a.since)))


def _date(text: str) -> int:
    try:
        return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
    except ValueError:
        raise CliError(f"--since {text!r}: expected YYYY-MM-DD") from None


def run(args: argparse.Namespace, settings: MeteringSettings) -> int:
    try:
        return int(asyncio.run(args.run(args, settings)))
    except CliError as exc:
        print(f"tollway: {exc}", file=sys.stderr)
        return 1
