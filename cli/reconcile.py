"""``tollway reconcile --customer ID --since DATE``: tollway's totals against Stripe's.
``tollway reconcile --credits ACCOUNT``: a prepaid account's ledger against its payments.

Exits 1 if what Stripe has differs from what tollway has sent (drift); usage not yet sent is
shown apart, since it is expected to be in flight. (Prepaid usage is sent to no meter: it was
paid for; its reconciliation is its payments and refunds.)
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
from tollway.credits import ACCOUNT_META, CREDITS_META, Credits, purchase_ref, refund_ref
from tollway.process import CliError, Subparsers
from tollway.redis_client import connect
from tollway.stripe_api import Stripe


def register(subparsers: Subparsers) -> None:
    rec = subparsers.add_parser("reconcile", help="compare tollway's totals with Stripe's")
    rec.add_argument("--customer", help="a customer's usage against its meter events")
    rec.add_argument("--since", help="with --customer: a date, YYYY-MM-DD (UTC)")
    rec.add_argument(
        "--credits", metavar="ACCOUNT", help="a prepaid account's ledger against its payments"
    )
    rec.add_argument("--stripe-api-base", help="Stripe API base URL (TOLLWAY_STRIPE_API_BASE)")
    add_store_flags(rec)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(MeteringSettings, args, stripe_api_base=args.stripe_api_base)
    if args.credits:
        return asyncio.run(reconcile_credits(settings, args.credits))
    if not (args.customer and args.since):
        raise CliError("give --customer and --since, or --credits ACCOUNT")
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


async def reconcile_credits(settings: MeteringSettings, account: str) -> int:
    """A prepaid account's ledger against Stripe: each payment for it (its PaymentIntents, by
    their ``tollway_account``), the credits it bought and the share its refunds took back,
    against the ledger's purchases and refunds under that payment. Exit 1 on any difference
    (a payment the ledger lacks, or one Stripe does not know)."""
    redis = connect(settings.redis_url, timeout_s=5.0)
    client = Stripe(settings)
    try:
        ledger: dict[str, int] = defaultdict(int)
        for entry in await Credits(redis).logged(account):
            ledger[entry.ref] += entry.credits
        query = f"metadata['{ACCOUNT_META}']:'{account}'"
        found = await client.v1.payment_intents.search_async({"query": query, "limit": 100})
        print(f"{'payment':<32} {'bought':>8} {'ledger':>8} {'refunded':>9} {'ledger':>8}")
        drift, seen = 0, set()
        for pi in found.data:
            if pi.status != "succeeded":
                continue
            credits = int((pi.to_dict().get("metadata") or {}).get(CREDITS_META, "0"))
            refunded = 0
            if pi.latest_charge:
                latest = pi.latest_charge
                charge_id = latest if isinstance(latest, str) else latest.id
                charge = await client.v1.charges.retrieve_async(charge_id)
                refunded = credits * int(charge.amount_refunded) // max(1, int(charge.amount))
            bought_ref, refund = purchase_ref(pi.id), refund_ref(pi.id)
            seen |= {bought_ref, refund}
            in_ledger, back = ledger.get(bought_ref, 0), -ledger.get(refund, 0)
            drift += abs(credits - in_ledger) + abs(refunded - back)
            print(f"{pi.id:<32} {credits:>8} {in_ledger:>8} {refunded:>9} {back:>8}")
        for ref, credits in sorted(ledger.items()):
            if ref.startswith(("payment:", "refund:")) and ref not in seen:
                print(f"{ref:<32} in the ledger ({credits:+}), not in Stripe")
                drift += abs(credits)
        return 1 if drift else 0
    except stripe.StripeError as exc:
        raise CliError(f"Stripe: {exc.user_message or exc}") from None
    finally:
        await client.aclose()
        await redis.aclose()
