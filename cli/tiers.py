"""``tollway tiers check FILE``: validate a tier table, printing every problem (exit 1)."""

from __future__ import annotations

import argparse

from tollway.process import Subparsers
from tollway.tiers import TierError, load_tiers


def register(subparsers: Subparsers) -> None:
    tiers = subparsers.add_parser("tiers", help="the tier table").add_subparsers(
        dest="tiers_command", required=True
    )
    check = tiers.add_parser("check", help="validate a tier table; exit 1 with every problem")
    check.add_argument("file")


def run(args: argparse.Namespace) -> int:
    try:
        table = load_tiers(args.file)
    except TierError as exc:
        for line in exc.problems:
            print(line)
        return 1
    print(f"{args.file}: {len(table)} tiers ok: {', '.join(table.tiers)}")
    return 0
