"""The ``tollway`` command: one parser, built from every package's commands.

Each module in ``COMMANDS`` follows the one convention (tollway/process.py): ``register``
adds its parsers, ``run`` does the work and returns the exit code. Exit codes: 0 success, 1 a
failure (unknown key, bad tier table, Redis unreachable), 2 bad usage or configuration.
Errors are one line on stderr; ``keys create`` prints only the new key on stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import authz.cli
import devkit.cli
import devkit.standin.cli
import metering.cli
import portal.cli
import webhook.cli
from cli import accounts, health, keys, reconcile, stripe_commands, tiers, usage
from tollway.process import CliError, add_commands
from tollway.settings import SettingsError
from tollway.store import KeyNotFound

COMMANDS = (
    keys,
    accounts,
    tiers,
    stripe_commands,
    usage,
    reconcile,
    health,
    authz.cli,
    webhook.cli,
    metering.cli,
    portal.cli,
    devkit.cli,
    devkit.standin.cli,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tollway", description="Charge for an API behind Envoy.")
    add_commands(p.add_subparsers(dest="command", required=True, metavar="COMMAND"), COMMANDS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (CliError, KeyNotFound, SettingsError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        print(f"tollway: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
