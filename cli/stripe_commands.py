"""``tollway stripe trigger|sync``: Stripe helpers for operators.

trigger EVENT   ask the stand-in to make something happen, as Stripe's `stripe trigger` does
sync            create or update Products, Prices and Billing Meters from the tier table
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import stripe as stripe_errors

from cli import stripe_sync
from tollway.process import CliError, Subparsers
from tollway.settings import RedisSettings, StripeSettings, load
from tollway.stripe_api import Stripe, StripeNotConfigured
from tollway.tiers import TierError, load_tiers

TRIGGERS = [
    "invoice.payment_failed",
    "invoice.paid",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.deleted",
]


def register(subparsers: Subparsers) -> None:
    stripe_cmd = subparsers.add_parser("stripe", help="Stripe helpers").add_subparsers(
        dest="stripe_command", required=True
    )
    trig = stripe_cmd.add_parser("trigger", help="make the stand-in send an event")
    trig.add_argument("event", choices=TRIGGERS)
    trig.add_argument("--subscription", default="")
    trig.add_argument("--customer", default="")
    trig.add_argument("--price", default="", help="with customer.subscription.updated: new price")
    trig.add_argument("--status", default="", help="with customer.subscription.updated: new status")
    trig.add_argument(
        "--standin-url",
        default=os.environ.get("TOLLWAY_STRIPE_API_BASE") or "http://127.0.0.1:12111",
    )
    sync = stripe_cmd.add_parser(
        "sync", help="create or update Products, Prices and Billing Meters from the tier table"
    )
    sync.add_argument("--tiers", type=Path, help="tier table (default: $TOLLWAY_TIERS)")
    sync.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")


def run(args: argparse.Namespace) -> int:
    return trigger(args) if args.stripe_command == "trigger" else sync(args)


def trigger(args: argparse.Namespace) -> int:
    body = {"event": args.event, "subscription": args.subscription, "customer": args.customer}
    if args.price:
        body["price"] = args.price
    if args.status:
        body["status"] = args.status
    if not args.standin_url.startswith(("http://", "https://")):
        raise CliError(f"--standin-url must be an http(s) URL, got {args.standin_url!r}")
    req = urllib.request.Request(  # noqa: S310 (scheme checked above)
        args.standin_url.rstrip("/") + "/_standin/trigger",
        data=json.dumps({k: v for k, v in body.items() if v}).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (an operator-given URL)
            obj = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise CliError(json.loads(exc.read()).get("error", {}).get("message", str(exc))) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(f"cannot reach the stand-in at {args.standin_url}: {exc}") from None
    print(json.dumps({"id": obj.get("id"), "status": obj.get("status")}))
    return 0


def sync(args: argparse.Namespace) -> int:
    """Print the plan of changes that makes Stripe match the tier table; apply it unless
    --dry-run."""
    try:
        table = load_tiers(args.tiers or load(RedisSettings, os.environ).tiers)
        stripe = Stripe(load(StripeSettings, os.environ))
    except TierError as exc:
        raise CliError("\n".join(exc.problems)) from None
    except StripeNotConfigured as exc:
        raise CliError(str(exc)) from None

    async def go() -> int:
        try:
            changes = await stripe_sync.plan(stripe, table)
            for change in changes:
                print(change.line())
            todo = [c for c in changes if c.action != stripe_sync.UNCHANGED]
            if not todo:
                print("Stripe already matches the tier table.")
                return 0
            if args.dry_run:
                print(f"{len(todo)} change(s) planned; --dry-run, so nothing was applied.")
                return 0
            done = await stripe_sync.apply(stripe, changes)
            print(f"applied {done} change(s).")
            return 0
        except stripe_errors.StripeError as exc:
            raise CliError(f"Stripe refused: {exc.user_message or exc}") from None
        finally:
            await stripe.aclose()

    return asyncio.run(go())
