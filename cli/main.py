"""The ``tollway`` command: one parser, built from every package's commands.

Each module in ``COMMANDS`` follows the one convention (tollway/process.py): ``register``
adds its parsers, ``run`` does the work and returns the exit code. Exit codes: 0 success, 1 a
failure (unknown key, bad tier table, Redis unreachable), 2 bad usage or configuration.
Errors are one line on stderr, mapped in ``main`` (the one place): ours, Redis's, Stripe's,
the system's, and anything unexpected (its traceback too with TOLLWAY_LOG_LEVEL=DEBUG). A
reader that goes away (``| head``) ends the command quietly. ``keys create`` prints only the
new key on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

import stripe
from redis.exceptions import RedisClusterException, RedisError

import authz.cli
import devkit.cli
import devkit.standin.cli
import metering.cli
import portal.cli
import webhook.cli
from cli import (
    accounts,
    api,
    audit,
    credits,
    health,
    keys,
    reconcile,
    stripe_commands,
    tiers,
    usage,
)
from tollway.key_store import KeyNotFound
from tollway.process import CliError, add_commands
from tollway.settings import SettingsError
from tollway.stripe_api import StripeNotConfigured
from tollway.version import version

COMMANDS = (
    keys,
    accounts,
    credits,
    audit,
    api,
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
    p.add_argument("--version", action="version", version=f"tollway {version()}")
    add_commands(p.add_subparsers(dest="command", required=True, metavar="COMMAND"), COMMANDS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except BrokenPipeError:
        # The reader took what it wanted (| head): nothing failed. Stop writing to the pipe,
        # so that the interpreter's last flush does not fail on it either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CliError, KeyNotFound, SettingsError, StripeNotConfigured) as exc:
        return fail(str(exc.args[0] if exc.args else exc))
    except (RedisError, RedisClusterException) as exc:
        return fail(f"Redis: {exc}")
    except stripe.StripeError as exc:
        return fail(f"Stripe: {exc.user_message or exc}")
    except OSError as exc:
        return fail(str(exc))
    except Exception as exc:  # a bug: still one line, and where it was with DEBUG
        if os.environ.get("TOLLWAY_LOG_LEVEL", "").upper() == "DEBUG":
            traceback.print_exc()
        return fail(f"unexpected {type(exc).__name__}: {exc} (TOLLWAY_LOG_LEVEL=DEBUG shows where)")


def fail(message: str) -> int:
    print(f"tollway: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
