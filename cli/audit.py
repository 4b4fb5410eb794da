"""``tollway audit``: who changed which key or account, and when (tollway/audit.py).

Newest first; filtered by target (``key:<id>`` or ``account:<id>``), actor and time. Prints
one line per entry, or JSON lines with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from cli.store_access import add_store_flags, settings_of, with_store
from tollway.key_store import KeyStore
from tollway.process import CliError, Subparsers
from tollway.settings import RedisSettings


def register(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("audit", help="who changed which key or account, and when")
    p.add_argument("--target", default="", help="key:<key id> or account:<account>")
    p.add_argument("--actor", default="", help="cli, customer:<cus_...>, stripe:<evt_...>")
    p.add_argument("--since", default="", help="an ISO 8601 date or time (UTC if no offset)")
    p.add_argument("--limit", type=int, default=50, help="entries shown (newest first)")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    add_store_flags(p)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 10_000:
        raise CliError("--limit must be 1 to 10000")
    since = _epoch(args.since) if args.since else 0
    return with_store(settings_of(RedisSettings, args), lambda store: show(store, args, since))


def _epoch(text: str) -> int:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--since {text!r}: not an ISO 8601 date or time") from None
    return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp())


async def show(store: KeyStore, args: argparse.Namespace, since: int) -> int:
    entries = await store.audit.entries(args.target, args.actor, since, 0, args.limit)
    for e in entries:
        if args.json:
            print(json.dumps(e.public(), sort_keys=True))
            continue
        when = datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        changes = " ".join(f"{k}={v}" for k, v in sorted(e.changes.items()))
        print(f"{when}  {e.actor:<24} {e.action:<10} {e.target}  {changes}".rstrip())
    return 0
