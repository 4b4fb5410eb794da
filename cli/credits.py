"""``tollway credits show|grant|adjust ACCOUNT``: a prepaid account's balance and ledger, and an
operator's movement of its credits, with a reason, audited (tollway/credits.py).

``grant`` adds credits; ``adjust`` moves them either way (a negative amount takes some back).
Each runs once per ``--ref``: give one to make a retried command safe (the default is new on
every run).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

from cli.accounts import when
from cli.store_access import add_store_flags, settings_of, with_store
from tollway.credits import Credits, Movement
from tollway.errors import InvalidInput, NotFound
from tollway.key_store import KeyStore
from tollway.process import CliError, Subparsers
from tollway.settings import RedisSettings

MOVES = {
    "grant": (Movement.GRANT, "add credits to a prepaid account (a gift, a goodwill credit)"),
    "adjust": (Movement.ADJUSTMENT, "correct a prepaid account's balance, up or down"),
}


def register(subparsers: Subparsers) -> None:
    credits = subparsers.add_parser(
        "credits", help="prepaid accounts' balances and ledgers"
    ).add_subparsers(dest="credits_command", required=True)
    show = credits.add_parser("show", help="an account's balance and its ledger, newest first")
    show.add_argument("account", metavar="ACCOUNT")
    show.add_argument("--limit", type=int, default=20, help="ledger entries to show (<= 1000)")
    show.add_argument("--json", action="store_true", help="print JSON")
    add_store_flags(show)
    for name, (_, text) in MOVES.items():
        sp = credits.add_parser(name, help=text)
        sp.add_argument("account", metavar="ACCOUNT")
        sp.add_argument("credits", type=int, metavar="CREDITS")
        sp.add_argument("--reason", required=True, help="why (kept in the ledger and the audit)")
        sp.add_argument("--ref", help="run once per this reference (default: a new one)")
        add_store_flags(sp)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(RedisSettings, args)
    if args.credits_command == "show":
        return with_store(settings, lambda store: show(store, args))
    return with_store(settings, lambda store: move(store, args))


async def show(store: KeyStore, args: argparse.Namespace) -> int:
    statement = await Credits(store.redis).statement(args.account, args.limit)
    totals, ledger = statement.totals, statement.entries
    if args.json:
        print(json.dumps(statement.public(), indent=2))
        return 0
    print(f"account {args.account}: balance {totals.balance:,} credits")
    if not totals.consistent:
        print(f"  the ledger sums to {totals.ledger:,}: not the balance", file=sys.stderr)
    for e in ledger:
        note = " ".join(x for x in (e.reason, f"({e.actor})" if e.actor else "") if x)
        print(f"  {when(e.at)}  {e.kind.value:<10} {e.credits:>+12,}  {note}")
    return 0 if totals.consistent else 1


async def move(store: KeyStore, args: argparse.Namespace) -> int:
    kind = MOVES[args.credits_command][0]
    ref = args.ref or f"cli:{uuid.uuid4().hex}"
    try:
        moved = await Credits(store.redis, store.audit).adjust(
            args.account, args.credits, args.reason, "cli", ref, kind
        )
    except (InvalidInput, NotFound) as exc:
        raise CliError(str(exc)) from None
    if not moved.applied:
        print(f"account {args.account}: {ref} was applied before; nothing moved", file=sys.stderr)
    else:
        print(
            f"account {args.account}: {moved.credits:+,} credits, balance {moved.balance:,}",
            file=sys.stderr,
        )
    return 0
