"""``tollway keys create|show|revoke|suspend|resume|rotate``: issue and manage API keys.

``keys create`` and ``keys rotate`` print only the new key on stdout; everything else goes to
stderr, so ``KEY=$(tollway keys create ...)`` works.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from cli.store_access import add_store_flags, settings_of, with_store
from tollway.keys import KeyMode
from tollway.process import CliError, Subparsers
from tollway.settings import StoreSettings
from tollway.store import KeyStore
from tollway.tiers import TierError, load_tiers

# Commands that change a key's state: name -> (KeyStore method, help).
CHANGES = {
    "revoke": ("revoke", "revoke a key for good (401)"),
    "suspend": ("hold", "stop a key without revoking it (402)"),
    "resume": ("release", "lift an operator's suspension"),
}


def register(subparsers: Subparsers) -> None:
    keys = subparsers.add_parser("keys", help="issue and manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="issue a key; prints only the key")
    create.add_argument("--tier", required=True)
    create.add_argument("--customer", help="customer id (default: a generated local id)")
    create.add_argument("--test", action="store_true", help="issue a tw_test_ key")
    add_store_flags(create)
    show = keys.add_parser("show", help="print a key's record as JSON (never the key)")
    show.add_argument("key", metavar="KEY_OR_ID")
    add_store_flags(show)
    for name, (_, text) in CHANGES.items():
        sp = keys.add_parser(name, help=text)
        sp.add_argument("key", metavar="KEY_OR_ID")
        add_store_flags(sp)
    rotate = keys.add_parser("rotate", help="issue a successor; the old key works for --overlap")
    rotate.add_argument("key", metavar="KEY_OR_ID")
    rotate.add_argument("--overlap", default="24h", help="how long the old key keeps working")
    add_store_flags(rotate)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(StoreSettings, args)
    command = args.keys_command
    if command == "create":
        return with_store(settings, lambda store: create(store, args, settings))
    if command == "show":
        return with_store(settings, lambda store: show(store, args.key))
    if command == "rotate":
        return with_store(settings, lambda store: rotate(store, args.key, args.overlap))
    return with_store(settings, lambda store: change(store, CHANGES[command][0], args.key))


async def create(store: KeyStore, args: argparse.Namespace, settings: StoreSettings) -> int:
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


async def show(store: KeyStore, key: str) -> int:
    record = await store.get(key)
    print(json.dumps(record.public(), indent=2))
    return 0


async def change(store: KeyStore, method: str, key: str) -> int:
    try:
        record = await getattr(store, method)(key)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    state = "suspended" if record.hold else record.status.value
    print(f"key {record.key_id} is now {state}", file=sys.stderr)
    return 0


def parse_duration(text: str) -> int:
    """'24h', '90m', '30s', '2d' or plain seconds → seconds. Raises ValueError."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    if text[-1:] in units and text[:-1].isdigit():
        return int(text[:-1]) * units[text[-1]]
    if text.isdigit():
        return int(text)
    raise ValueError(f"not a duration: {text!r} (use e.g. 24h, 90m, 0)")


async def rotate(store: KeyStore, key: str, overlap_text: str) -> int:
    try:
        overlap = parse_duration(overlap_text)
        plaintext, record = await store.rotate(key, overlap)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(plaintext)
    print(f"new key {record.key_id}; the old key stops working in {overlap}s", file=sys.stderr)
    return 0
