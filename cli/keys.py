"""``tollway keys create|list|show|revoke|suspend|resume|rotate|reindex|peppers``: issue and
manage API keys.

``keys create`` and ``keys rotate`` print only the new key on stdout; everything else goes to
stderr, so ``KEY=$(tollway keys create ...)`` works.
"""

from __future__ import annotations

import argparse
import json
import sys

from cli.accounts import print_keys
from cli.store_access import add_store_flags, lifecycle, settings_of, with_store
from tollway.key_store import KeyNotFound, KeyStore
from tollway.keys import KeyMode, new_customer_id, pepper_fingerprint
from tollway.process import CliError, Subparsers
from tollway.settings import RedisSettings
from tollway.tiers import TierError, load_tiers

# Commands that change a key's state: name -> (Lifecycle method, help).
CHANGES = {
    "revoke": ("revoke", "revoke a key for good (401)"),
    "suspend": ("suspend", "stop a key without revoking it (402); its successors inherit it"),
    "resume": ("resume", "lift an operator's suspension of the key"),
}


def register(subparsers: Subparsers) -> None:
    keys = subparsers.add_parser("keys", help="issue and manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="issue a key; prints only the key")
    create.add_argument("--tier", help="the key's tier (not with --subscription)")
    owner = create.add_mutually_exclusive_group()
    owner.add_argument("--customer", help="customer id (default: a generated local id)")
    owner.add_argument(
        "--subscription",
        help="bind the key to a subscription the webhook has seen: its tier comes from the "
        "subscription's price, and it follows the subscription's billing state",
    )
    create.add_argument("--test", action="store_true", help="issue a tw_test_ key")
    add_store_flags(create)
    listing = keys.add_parser("list", help="the keys of a customer or subscription (never a key)")
    whose = listing.add_mutually_exclusive_group(required=True)
    whose.add_argument("--customer")
    whose.add_argument("--subscription")
    listing.add_argument("--json", action="store_true", help="print JSON")
    add_store_flags(listing)
    show = keys.add_parser("show", help="print a key's record as JSON (never the key)")
    show.add_argument("key", metavar="KEY_OR_ID")
    add_store_flags(show)
    for name, (_, text) in CHANGES.items():
        sp = keys.add_parser(name, help=text)
        sp.add_argument("key", metavar="KEY_OR_ID")
        add_store_flags(sp)
    reindex = keys.add_parser(
        "reindex", help="put every key and account in the API's ordered lists (after upgrading)"
    )
    add_store_flags(reindex)
    peppers = keys.add_parser(
        "peppers", help="keys by the pepper they are under: when an earlier one can be dropped"
    )
    add_store_flags(peppers)
    rotate = keys.add_parser("rotate", help="issue a successor; the old key works for --overlap")
    rotate.add_argument("key", metavar="KEY_OR_ID")
    rotate.add_argument("--overlap", default="24h", help="how long the old key keeps working")
    add_store_flags(rotate)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(RedisSettings, args)
    command = args.keys_command
    if command == "create":
        return with_store(settings, lambda store: create(store, args, settings))
    if command == "list":
        owner = args.customer or args.subscription
        return with_store(settings, lambda store: list_keys(store, owner, args.json))
    if command == "show":
        return with_store(settings, lambda store: show(store, args.key))
    if command == "rotate":
        return with_store(settings, lambda store: rotate(store, args.key, args.overlap))
    if command == "reindex":
        return with_store(settings, reindex)
    if command == "peppers":
        return with_store(settings, peppers)
    return with_store(settings, lambda store: change(store, CHANGES[command][0], args.key))


async def create(store: KeyStore, args: argparse.Namespace, settings: RedisSettings) -> int:
    try:
        table = load_tiers(settings.tiers)
    except TierError as exc:
        raise CliError(f"invalid tier table: {exc.problems[0]}") from None
    mode = KeyMode.TEST if args.test else KeyMode.LIVE
    try:
        if args.subscription:
            if args.tier:
                raise CliError("--tier comes from the subscription; leave it out")
            plaintext, record = await lifecycle(store).create_for_subscription(
                args.subscription, mode
            )
            if table.get(record.tier) is None:
                print(f"warning: tier {record.tier!r} is not in the tier table", file=sys.stderr)
        else:
            if not args.tier:
                raise CliError("--tier is required (or --subscription)")
            if table.get(args.tier) is None:
                raise CliError(f"unknown tier {args.tier!r} (tiers: {', '.join(table.tiers)})")
            customer = args.customer or new_customer_id()
            plaintext, record = await lifecycle(store).create(args.tier, customer, mode)
    except (ValueError, KeyNotFound) as exc:
        raise CliError(str(exc.args[0] if exc.args else exc)) from None
    print(plaintext)
    print(
        f"created key {record.key_id} (tier {record.tier}, account {record.account})",
        file=sys.stderr,
    )
    return 0


async def list_keys(store: KeyStore, owner: str, as_json: bool) -> int:
    rows = await lifecycle(store).listing(await store.records_of(owner))
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_keys(rows)
    return 0


async def show(store: KeyStore, key: str) -> int:
    record = await store.get(key)
    state = await lifecycle(store).state(record)
    print(json.dumps({**record.public(), "state": state.value}, indent=2))
    return 0


async def change(store: KeyStore, method: str, key: str) -> int:
    keys = lifecycle(store)
    try:
        record = await getattr(keys, method)(key)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(f"key {record.key_id} is now {await keys.state(record)}", file=sys.stderr)
    return 0


async def reindex(store: KeyStore) -> int:
    n = await store.reindex()
    print(f"{n} keys indexed", file=sys.stderr)
    return 0


async def peppers(store: KeyStore) -> int:
    """Prints, as JSON, the keys not revoked under each pepper (by fingerprint), and which
    earlier peppers no key is under any more (safe to drop from TOLLWAY_KEY_PEPPER)."""
    counts = await store.pepper_counts()
    hasher = store.hasher
    earlier = [pepper_fingerprint(p) for p in hasher.earlier]
    unrecorded = counts.pop("", 0)
    report = {
        "in_force": hasher.fingerprint,
        "earlier": earlier,
        "keys": counts,
        # Made before records named their pepper: under one of those listed, not known which.
        "keys_unrecorded": unrecorded,
        "droppable": [] if unrecorded else [fp for fp in earlier if not counts.get(fp)],
    }
    print(json.dumps(report, indent=2))
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
        plaintext, record = await lifecycle(store).rotate(key, overlap)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(plaintext)
    print(f"new key {record.key_id}; the old key stops working in {overlap}s", file=sys.stderr)
    return 0
