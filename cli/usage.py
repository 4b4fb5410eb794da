"""``tollway usage show --customer ID [--by window|key]``: a customer's usage, counted,
pending and sent, per window and in total; or, by key, what each of its keys used this
billing period (every key of an account draws on the account's one quota). ``tollway usage
spool``: the usage authz spooled to files (cli/spool.py)."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime

from cli import spool
from cli.accounts import limits_of, uses
from cli.store_access import add_store_flags, lifecycle, settings_of, with_store
from metering.settings import MeteringSettings
from tollway.accounts import Accounts, AccountView
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.process import Subparsers
from tollway.redis_client import connect
from tollway.tiers import load_tiers
from tollway.usage_report import Row, carried, customer_windows, per_key


def register(subparsers: Subparsers) -> None:
    usage = subparsers.add_parser("usage", help="usage per customer").add_subparsers(
        dest="usage_command", required=True
    )
    show = usage.add_parser("show", help="counted, pending and sent, per window")
    show.add_argument("--customer", required=True)
    show.add_argument("--by", choices=("window", "key"), default="window")
    add_store_flags(show)
    spool.register(usage)


def run(args: argparse.Namespace) -> int:
    if args.usage_command == "spool":
        return spool.run(args)
    settings = settings_of(MeteringSettings, args)
    if args.by == "key":
        return asyncio.run(show_by_key(settings, args.customer))
    return with_store(settings, lambda keys: show(keys, settings, args.customer))


async def show_by_key(settings: MeteringSettings, customer: str) -> int:
    redis = connect(settings.redis_url, timeout_s=5.0)
    try:
        keys = KeyStore(redis, KeyHasher.configured(settings))
        rows = await per_key(keys, customer, int(time.time()))
        listing = await lifecycle(keys).listing([record for record, _ in rows])
    finally:
        await redis.aclose()
    print(f"{'account':<30} {'key id':<17} {'prefix':<13} {'status':<10} {'this period':>11}")
    for (record, n), shown in zip(rows, listing, strict=True):
        print(
            f"{record.account:<30} {record.key_id:<17} {record.prefix or '-':<13} "
            f"{shown['status']!s:<10} {n:>11}"
        )
    return 0


async def windows(settings: MeteringSettings, customer: str) -> tuple[dict[str, Row], int]:
    """The customer's rows, and the refunds carried to a later window, read with a
    connection of their own."""
    redis = connect(settings.redis_url, timeout_s=5.0)
    try:
        return await windows_in(KeyStore(redis, KeyHasher.configured(settings)), settings, customer)
    finally:
        await redis.aclose()


async def windows_in(
    keys: KeyStore, settings: MeteringSettings, customer: str
) -> tuple[dict[str, Row], int]:
    rows = await customer_windows(keys, customer, load_tiers(settings.tiers))
    return rows, await carried(keys, customer)


async def accounts_of(keys: KeyStore, customer: str) -> list[AccountView]:
    """The customer's accounts, for their use against their limits."""
    accounts = sorted({r.account for r in await keys.records_of(customer)})
    return [await Accounts(keys).show(a) for a in accounts]


def when(window: str) -> str:
    return datetime.fromtimestamp(int(window), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def show(keys: KeyStore, settings: MeteringSettings, customer: str) -> int:
    rows, carry = await windows_in(keys, settings, customer)
    total = {"counting": 0, "pending": 0, "sent": 0}
    print(f"{'meter':<20} {'window start':<21} {'counting':>9} {'pending':>8} {'sent':>8}")
    for field in sorted(rows, key=lambda f: (f.split("|")[0], int(f.split("|")[1]))):
        meter, window = field.split("|")
        r = rows[field]
        print(f"{meter:<20} {when(window):<21} {r['counting']:>9} {r['pending']:>8} {r['sent']:>8}")
        for k in total:
            total[k] += r[k]
    print(f"{'total':<42} {total['counting']:>9} {total['pending']:>8} {total['sent']:>8}")
    if carry:
        print(f"refunds carried to the next window (failed calls whose window was sent): {carry}")
    for view in await accounts_of(keys, customer):  # against the limits in force
        print(f"account {view.account}: " + "; ".join(uses(view, limits_of(view, settings))))
    return 0
