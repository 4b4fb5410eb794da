"""``tollway reconcile --customer ID --since DATE``: tollway's totals against Stripe's.

Exits 1 if what Stripe has differs from what tollway has sent (drift); usage not yet sent is
shown apart, since it is expected to be in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime

import stripe

from cli.store_access import add_store_flags, settings_of
from cli.usage import windows
from metering.settings import MeteringSettings
from tollway.process import CliError, Subparsers
from tollway.stripe_api import Stripe


def register(subparsers: Subparsers) -> None:
    rec = subparsers.add_parser("reconcile", help="compare tollway's totals with Stripe's")
    rec.add_argument("--customer", required=True)
    rec.add_argument("--since", required=True, help="a date, YYYY-MM-DD (UTC)")
    rec.add_argument("--stripe-api-base", help="Stripe API base URL (TOLLWAY_STRIPE_API_BASE)")
    add_store_flags(rec)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(MeteringSettings, args, stripe_api_base=args.stripe_api_base)
    return asyncio.run(reconcile(settings, args.customer, parse_date(args.since)))


def parse_date(text: str) -> int:
    try:
        return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
    except ValueError:
        raise CliError(f"--since {text!r}: expected YYYY-MM-DD") from None


async def reconcile(settings: MeteringSettings, customer: str, since: int) -> int:
    rows, _ = await windows(settings, customer)
    by_meter: dict[str, dict[str, int]] = defaultdict(
        lambda: {"counting": 0, "pending": 0, "sent": 0}
    )
    for field, r in rows.items():
        meter, window = field.split("|")
        if int(window) >= since:
            for k, v in r.items():
                by_meter[meter][k] += v
    client = Stripe(settings)
    try:
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
