"""The ``tollway`` command: keys, tiers, and the services.

Exit codes: 0 success, 1 a failure (unknown key, bad tier table, Redis unreachable), 2 bad
usage. Errors are one line on stderr; ``keys create`` prints only the new key on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import stripe as stripe_errors
from redis.exceptions import RedisError

from metering import cli as metering_cli
from tollway import health as health_check
from tollway import stripe_sync
from tollway.keys import KeyHasher, KeyMode
from tollway.redis_client import connect
from tollway.settings import (
    MeteringSettings,
    SettingsError,
    StoreSettings,
    StripeSettings,
    load,
    with_flags,
)
from tollway.store import KeyNotFound, KeyStore
from tollway.stripe_api import Stripe, StripeNotConfigured
from tollway.tiers import TierError, load_tiers

# Commands that are whole programs with their own flags: name -> module with main(argv).
SERVICES = {
    "authz": "authz.__main__",
    "metering": "metering.__main__",  # but `tollway metering dead-letters` is an admin command
    "webhook": "webhook.__main__",
    "stripe-standin": "tollway.standin.__main__",
    "dev": "tollway.dev.cli",
}


class CliError(Exception):
    """A failure to report as one line on stderr with exit code 1."""


def _store_settings(args: argparse.Namespace) -> StoreSettings:
    return with_flags(StoreSettings, os.environ, {"redis_url": args.redis_url, "tiers": args.tiers})


def _metering_settings(args: argparse.Namespace) -> MeteringSettings:
    flags = {
        "redis_url": args.redis_url,
        "tiers": args.tiers,
        "stripe_api_base": getattr(args, "stripe_api_base", None),
    }
    return with_flags(MeteringSettings, os.environ, flags)


def _with_store(fn: Callable[[KeyStore, argparse.Namespace, StoreSettings], Awaitable[int]]) -> Any:
    def run(args: argparse.Namespace) -> int:
        settings = _store_settings(args)

        async def go() -> int:
            redis = connect(settings.redis_url, timeout_s=5.0)
            try:
                return await fn(
                    KeyStore(redis, KeyHasher(settings.key_pepper.encode())), args, settings
                )
            except (RedisError, OSError) as exc:
                raise CliError(f"cannot reach Redis at {settings.redis_url}: {exc}") from None
            finally:
                await redis.aclose()

        return asyncio.run(go())

    return run


async def keys_create(store: KeyStore, args: argparse.Namespace, settings: StoreSettings) -> int:
    try:
        table = load_tiers(settings.tiers)
    except TierError as exc:
        raise CliError(f"invalid tier table: {exc.problems[0]}") from None
    if table.get(args.tier) is None:
        raise CliError(f"unknown tier {args.tier!r} (tiers: {', '.join(table.tiers)})")
    customer = args.customer or f"local_{os.urandom(4).hex()}"
    mode = KeyMode.TEST if args.test else KeyMode.LIVE
    plaintext, record = await store.create(args.tier, customer, mode)
    print(plaintext)
    print(f"created key {record.key_id} (tier {record.tier}, customer {customer})", file=sys.stderr)
    return 0


async def keys_show(store: KeyStore, args: argparse.Namespace, _: StoreSettings) -> int:
    record = await store.get(args.key)
    print(json.dumps(record.public(), indent=2))
    return 0


def _change(action: str) -> Any:
    async def run(store: KeyStore, args: argparse.Namespace, _: StoreSettings) -> int:
        try:
            record = await getattr(store, action)(args.key)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        state = "suspended" if record.hold else record.status.value
        print(f"key {record.key_id} is now {state}", file=sys.stderr)
        return 0

    return run


def parse_duration(text: str) -> int:
    """'24h', '90m', '30s', '2d' or plain seconds → seconds. Raises ValueError."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    if text[-1:] in units and text[:-1].isdigit():
        return int(text[:-1]) * units[text[-1]]
    if text.isdigit():
        return int(text)
    raise ValueError(f"not a duration: {text!r} (use e.g. 24h, 90m, 0)")


async def keys_rotate(store: KeyStore, args: argparse.Namespace, _: StoreSettings) -> int:
    try:
        overlap = parse_duration(args.overlap)
        plaintext, record = await store.rotate(args.key, overlap)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(plaintext)
    print(f"new key {record.key_id}; the old key stops working in {overlap}s", file=sys.stderr)
    return 0


def stripe_trigger(args: argparse.Namespace) -> int:
    """Ask the stand-in to make something happen, as Stripe's own `stripe trigger` does."""
    import urllib.error
    import urllib.request

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


def stripe_sync_cmd(args: argparse.Namespace) -> int:
    """Print the plan of changes that makes Stripe match the tier table; apply it unless
    --dry-run."""
    try:
        table = load_tiers(args.tiers or load(StoreSettings, os.environ).tiers)
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


def tiers_check(args: argparse.Namespace) -> int:
    try:
        table = load_tiers(args.file)
    except TierError as exc:
        for line in exc.problems:
            print(line)
        return 1
    print(f"{args.file}: {len(table)} tiers ok: {', '.join(table.tiers)}")
    return 0


def _store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", help="Redis URL (default: $TOLLWAY_REDIS_URL)")
    p.add_argument("--tiers", type=Path, help="tier table (default: $TOLLWAY_TIERS)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tollway", description="Charge for an API behind Envoy.")
    sub = p.add_subparsers(dest="command", required=True)

    keys = sub.add_parser("keys", help="issue and manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="issue a key; prints only the key")
    create.add_argument("--tier", required=True)
    create.add_argument("--customer", help="customer id (default: a generated local id)")
    create.add_argument("--test", action="store_true", help="issue a tw_test_ key")
    _store_flags(create)
    create.set_defaults(run=_with_store(keys_create))
    actions = {
        "show": (keys_show, "print a key's record as JSON (never the key)"),
        "revoke": (_change("revoke"), "revoke a key for good (401)"),
        "suspend": (_change("hold"), "stop a key without revoking it (402)"),
        "resume": (_change("release"), "lift an operator's suspension"),
    }
    for name, (fn, text) in actions.items():
        sp = keys.add_parser(name, help=text)
        sp.add_argument("key", metavar="KEY_OR_ID")
        _store_flags(sp)
        sp.set_defaults(run=_with_store(fn))
    rotate = keys.add_parser("rotate", help="issue a successor; the old key works for --overlap")
    rotate.add_argument("key", metavar="KEY_OR_ID")
    rotate.add_argument("--overlap", default="24h", help="how long the old key keeps working")
    _store_flags(rotate)
    rotate.set_defaults(run=_with_store(keys_rotate))

    stripe_cmd = sub.add_parser("stripe", help="Stripe helpers").add_subparsers(
        dest="stripe_command", required=True
    )
    trig = stripe_cmd.add_parser("trigger", help="make the stand-in send an event")
    trig.add_argument(
        "event",
        choices=["invoice.payment_failed", "invoice.paid", "customer.subscription.updated",
                 "customer.subscription.deleted", "customer.deleted"],
    )  # fmt: skip
    trig.add_argument("--subscription", default="")
    trig.add_argument("--customer", default="")
    trig.add_argument("--price", default="", help="with customer.subscription.updated: new price")
    trig.add_argument("--status", default="", help="with customer.subscription.updated: new status")
    trig.add_argument(
        "--standin-url",
        default=os.environ.get("TOLLWAY_STRIPE_API_BASE") or "http://127.0.0.1:12111",
    )
    trig.set_defaults(run=stripe_trigger)

    sync = stripe_cmd.add_parser(
        "sync", help="create or update Products, Prices and Billing Meters from the tier table"
    )
    sync.add_argument("--tiers", type=Path, help="tier table (default: $TOLLWAY_TIERS)")
    sync.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    sync.set_defaults(run=stripe_sync_cmd)

    tiers = sub.add_parser("tiers", help="the tier table").add_subparsers(
        dest="tiers_command", required=True
    )
    metering_cli.add_commands(sub, _store_flags)
    check = tiers.add_parser("check", help="validate a tier table; exit 1 with every problem")
    check.add_argument("file")
    check.set_defaults(run=tiers_check)

    health = sub.add_parser(
        "health", help="exit 0 if a local service is serving (Docker HEALTHCHECK)"
    )
    health.add_argument("service", nargs="?", help="authz, webhook, metering or stripe-standin "
                        "(default: the one PID 1 runs)")  # fmt: skip
    health.set_defaults(run=lambda a: health_check.main(a.service))
    sub.add_parser("authz", help="run the ext_authz gRPC server", add_help=False)
    for name, text in (
        ("dev", "run the whole local stack"),
        ("webhook", "run the Stripe webhook service"),
        ("stripe-standin", "run the local Stripe stand-in"),
    ):
        sub.add_parser(name, help=text, add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Service commands own their flags; hand them everything after the command name.
    if argv and argv[0] in SERVICES and argv[1:2] != ["dead-letters"]:
        module = importlib.import_module(SERVICES[argv[0]])
        return int(module.main(argv[1:]))
    args = parser().parse_args(argv)
    if args.command in ("usage", "metering", "reconcile"):
        try:
            settings = _metering_settings(args)
        except SettingsError as exc:
            print(f"tollway: {exc}", file=sys.stderr)
            return 1
        return metering_cli.run(args, settings)
    try:
        return int(args.run(args))
    except (CliError, KeyNotFound, SettingsError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        print(f"tollway: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
