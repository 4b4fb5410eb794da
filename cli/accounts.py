"""``tollway accounts show|suspend|resume|set-limits|set-tier``: what an account holds, an
operator's hold on all of it, its own limits, and an operator's change of a customer account's
tier.

An account is the subscription when there is one, otherwise the customer: every key of it
draws on one token bucket, one monthly quota and one usage count (docs/accounts.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from cli.store_access import add_store_flags, lifecycle, settings_of, with_store
from tollway.accounts import Accounts, AccountView
from tollway.clock import WallClock
from tollway.key_store import KeyStore
from tollway.process import CliError, Subparsers
from tollway.settings import RedisSettings
from tollway.tiers import TierError, load_tiers

HOLDS = {
    "suspend": "stop every key of an account, and its new ones, without revoking them (402)",
    "resume": "lift an operator's suspension of an account",
}


def register(subparsers: Subparsers) -> None:
    accounts = subparsers.add_parser("accounts", help="accounts and their keys").add_subparsers(
        dest="accounts_command", required=True
    )
    show = accounts.add_parser(
        "show", help="an account's plan, status, usage this period and keys (never a key)"
    )
    show.add_argument("account", metavar="ACCOUNT", help="a subscription (sub_...) or customer id")
    show.add_argument("--json", action="store_true", help="print JSON")
    add_store_flags(show)
    for name, text in HOLDS.items():
        sp = accounts.add_parser(name, help=text)
        sp.add_argument("account", metavar="ACCOUNT")
        add_store_flags(sp)
    limits = accounts.add_parser(
        "set-limits", help="give one account its own limits in place of its tier's"
    )
    limits.add_argument("account", metavar="ACCOUNT")
    limits.add_argument("--rate", help="requests per second the bucket refills")
    limits.add_argument("--burst", help="the bucket's size")
    limits.add_argument("--quota", help="monthly quota (0 = unlimited)")
    limits.add_argument("--features", help="comma-separated features ('' for none)")
    limits.add_argument("--per-day", help="requests per UTC day (0 = no cap)")
    limits.add_argument("--per-hour", help="requests per UTC hour (0 = no cap)")
    limits.add_argument("--max-concurrent", help="requests in flight at once (0 = no cap)")
    limits.add_argument("--clear", action="store_true", help="drop earlier overrides first")
    add_store_flags(limits)
    tier = accounts.add_parser(
        "set-tier", help="move a customer account and all its keys to another tier"
    )
    tier.add_argument("account", metavar="ACCOUNT")
    tier.add_argument("tier", metavar="TIER")
    add_store_flags(tier)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(RedisSettings, args)
    if args.accounts_command == "show":
        return with_store(settings, lambda store: show(store, args.account, args.json, settings))
    if args.accounts_command in HOLDS:
        return with_store(settings, lambda store: hold(store, args.accounts_command, args.account))
    if args.accounts_command == "set-limits":
        return with_store(settings, lambda store: set_limits(store, args))
    return with_store(settings, lambda store: set_tier(store, args, settings))


def _number(text: str, kind: type[int] | type[float]) -> object:
    """``text`` as a number if it is one, else the text (the validator names it)."""
    try:
        return kind(text)
    except ValueError:
        return text


async def hold(store: KeyStore, command: str, account: str) -> int:
    keys = lifecycle(store)
    try:
        if command == "suspend":
            n = await keys.suspend_account(account)
        else:
            n = await keys.resume_account(account)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    now = "suspended (402)" if command == "suspend" else "no longer suspended by the operator"
    print(f"account {account} ({n} key(s)) is {now}", file=sys.stderr)
    return 0


async def set_limits(store: KeyStore, args: argparse.Namespace) -> int:
    limits: dict[str, object] = {}
    if args.rate is not None:
        limits["requests_per_second"] = _number(args.rate, float)
    if args.burst is not None:
        limits["burst"] = _number(args.burst, int)
    if args.quota is not None:
        limits["monthly_quota"] = _number(args.quota, int)
    if args.features is not None:
        limits["features"] = [f.strip() for f in args.features.split(",") if f.strip()]
    for flag in ("per_day", "per_hour", "max_concurrent"):
        if getattr(args, flag) is not None:
            limits[flag] = _number(getattr(args, flag), int)
    if not limits and not args.clear:
        raise CliError(
            "nothing to set: give --rate, --burst, --quota, --features, --per-day, --per-hour, "
            "--max-concurrent or --clear"
        )
    try:
        await Accounts(store).set_limits(args.account, limits, args.clear)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(f"account {args.account}: limits set; applied at its next request", file=sys.stderr)
    return 0


def when(epoch: int | str) -> str:
    t = int(epoch or 0)
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M") if t else "-"


# The caps beside the quota, as `accounts show` and `usage show` print them.
CAPS = ("per_day", "per_hour", "max_concurrent")


def limits_of(view: AccountView, settings: RedisSettings) -> dict[str, int | None]:
    """The account's monthly quota, day and hour caps and concurrency cap in force, by tier
    field (0: none; None: its tier is not in the table)."""
    try:
        tier = load_tiers(settings.tiers).get(view.plan.get("tier", ""))
    except TierError:
        tier = None
    found = {f: view.in_force(f, tier) for f in (*CAPS, "monthly_quota")}
    return {f: None if v is None else int(v) for f, v in found.items()}


async def show(store: KeyStore, account: str, as_json: bool, settings: RedisSettings) -> int:
    view = await Accounts(store).show(account)
    limits = limits_of(view, settings)
    quota = limits["monthly_quota"]
    keys = view.listing(WallClock().now())
    if as_json:
        caps = {f: limits[f] for f in CAPS}
        print(json.dumps({**view.public(), "keys": keys, "quota": quota, **caps}, indent=2))
        return 0
    plan = view.plan
    print(f"account       {view.account}")
    print(f"customer      {plan.get('customer', '-')}")
    print(f"subscription  {plan.get('subscription') or '-'}")
    print(f"tier          {plan.get('tier', '-')}")
    print(f"status        {plan.get('status') or 'active'}")
    if plan.get("hold"):
        print("suspended     by the operator (every key 402; tollway accounts resume)")
    if plan.get("status") == "past_due":
        print(f"grace until   {when(plan.get('grace_until', 0))}")
    print(f"period        {when(plan.get('period_start', 0))} .. {when(plan.get('period_end', 0))}")
    first, *more = uses(view, limits)
    print(f"used          {first}")
    for line in more:
        print(f"{'':14}{line}")
    for field, value in view.overrides.items():
        print(f"override      {field} = {value or '(none)'}")
    print()
    print_keys(keys)
    return 0


def uses(view: AccountView, limits: dict[str, int | None]) -> list[str]:
    """The account's use against each of its limits in force, a line each: the period's, then
    each cap that is on."""
    quota = limits["monthly_quota"]
    of = {None: "", 0: " (no quota)"}.get(quota, f" of {quota}")
    lines = [f"{view.quota_used}{of} requests this period"]
    for label, used, cap in (
        ("today (UTC)", view.day_used, limits["per_day"]),
        ("this hour (UTC)", view.hour_used, limits["per_hour"]),
        ("in flight now", view.in_flight, limits["max_concurrent"]),
    ):
        if cap:
            lines.append(f"{used} of {cap} requests {label}")
    return lines


def print_keys(rows: list[dict[str, object]]) -> None:
    print(
        f"{'key id':<17} {'prefix':<13} {'status':<10} {'tier':<12} {'created':<17} "
        f"{'last used':<17} {'expires':<17}"
    )
    for r in rows:
        print(
            f"{r['key_id']!s:<17} {r['prefix'] or '-'!s:<13} {r['status']!s:<10} "
            f"{r['tier']!s:<12} {when(str(r['created'])):<17} {when(str(r['last_used'])):<17} "
            f"{when(str(r['expires_at'])):<17}"
        )


async def set_tier(store: KeyStore, args: argparse.Namespace, settings: RedisSettings) -> int:
    try:
        table = load_tiers(settings.tiers)
    except TierError as exc:
        raise CliError(f"invalid tier table: {exc.problems[0]}") from None
    if table.get(args.tier) is None:
        raise CliError(f"unknown tier {args.tier!r} (tiers: {', '.join(table.tiers)})")
    try:
        moved = await Accounts(store).set_tier(args.account, args.tier)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(
        f"account {args.account} is on tier {args.tier} ({moved} key(s)); its quota used "
        "this period stays, and its bucket clamps to the new burst",
        file=sys.stderr,
    )
    return 0
