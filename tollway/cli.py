"""The ``tollway`` command: keys, tiers, and the services.

Exit codes: 0 success, 1 a failure (unknown key, bad tier table, Redis unreachable), 2 bad
usage. Errors are one line on stderr; ``keys create`` prints only the new key on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from tollway.keys import KeyHasher, KeyMode
from tollway.records import KeyStatus
from tollway.redis_client import connect
from tollway.settings import SettingsError, StoreSettings, load
from tollway.store import KeyNotFound, KeyStore
from tollway.tiers import TierError, load_tiers


class CliError(Exception):
    """A failure to report as one line on stderr with exit code 1."""


def _store_settings(args: argparse.Namespace) -> StoreSettings:
    base = load(StoreSettings, os.environ)
    flags = {"redis_url": args.redis_url, "tiers": args.tiers}
    return dataclasses.replace(base, **{k: v for k, v in flags.items() if v is not None})


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


def _set_status(status: KeyStatus) -> Any:
    async def run(store: KeyStore, args: argparse.Namespace, _: StoreSettings) -> int:
        try:
            record = await store.set_status(args.key, status)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        print(f"key {record.key_id} is now {record.status.value}", file=sys.stderr)
        return 0

    return run


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
        "revoke": (_set_status(KeyStatus.REVOKED), "revoke a key for good (401)"),
        "suspend": (_set_status(KeyStatus.SUSPENDED), "stop a key without revoking it (402)"),
        "resume": (_set_status(KeyStatus.ACTIVE), "make a suspended key active again"),
    }
    for name, (fn, text) in actions.items():
        sp = keys.add_parser(name, help=text)
        sp.add_argument("key", metavar="KEY_OR_ID")
        _store_flags(sp)
        sp.set_defaults(run=_with_store(fn))

    tiers = sub.add_parser("tiers", help="the tier table").add_subparsers(
        dest="tiers_command", required=True
    )
    check = tiers.add_parser("check", help="validate a tier table; exit 1 with every problem")
    check.add_argument("file")
    check.set_defaults(run=tiers_check)

    authz = sub.add_parser("authz", help="run the ext_authz gRPC server", add_help=False)
    authz.set_defaults(run=None, passthrough="authz")
    dev = sub.add_parser("dev", help="run the whole local stack", add_help=False)
    dev.set_defaults(run=None, passthrough="dev")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Service commands own their flags; hand them everything after the command name.
    if argv and argv[0] == "authz":
        from authz.__main__ import main as authz_main

        return authz_main(argv[1:])
    if argv and argv[0] == "dev":
        from tollway.dev.cli import main as dev_main

        return dev_main(argv[1:])
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (CliError, KeyNotFound, SettingsError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        print(f"tollway: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
