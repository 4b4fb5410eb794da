"""Run a command: settings from environment and flags, JSON logs, its async main.

Every ``tollway`` command lives in a module with two functions, the one convention the
dispatcher (cli/main.py) and ``python -m <service>`` (``standalone``) both use:

    register(subparsers)   add the command's parser(s)
    run(args) -> int       do it; the exit code

Exit codes, the same for every tollway command: 0 success or a clean stop; 1 a failure
(``CliError``, a port already in use, Redis unreachable); 2 bad usage or configuration (a
setting, the tier table, Stripe keys).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from tollway import logs
from tollway import version as build
from tollway.errors import Refused
from tollway.settings import SettingsError, with_flags
from tollway.stripe_api import StripeNotConfigured
from tollway.tier_source import TierSource
from tollway.tiers import TierError

S = TypeVar("S")
# What ``register`` receives: the parser's subparsers (generic only to the type checker).
if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction


class CliError(Refused):
    """A failure to report as one line on stderr, with exit code 1."""


def add_commands(subparsers: Subparsers, modules: Iterable[ModuleType]) -> None:
    """Let each module ``register`` its parsers, and bind them to its ``run``."""
    for module in modules:
        known = set(subparsers.choices)
        module.register(subparsers)
        for name in subparsers.choices.keys() - known:
            subparsers.choices[name].set_defaults(run=module.run)


def standalone(command: ModuleType, name: str, argv: Sequence[str] | None = None) -> int:
    """``python -m <package>``: the same parser and run as ``tollway <name>``."""
    parser = argparse.ArgumentParser(prog="tollway")
    add_commands(parser.add_subparsers(dest="command", required=True), [command])
    args = parser.parse_args([name, *(sys.argv[1:] if argv is None else argv)])
    return int(args.run(args))


def stop_on_signals(tiers: TierSource) -> asyncio.Event:
    """An event a service waits on: set by SIGTERM or SIGINT. SIGHUP, or a change to its
    file, reloads ``tiers``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tiers.follow(loop)
    return stop


def run_loop(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Run ``main`` on uvloop when asked for and installed, otherwise on asyncio's loop."""
    if event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:  # e.g. Windows, where uvloop does not exist
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def run(
    name: str,
    settings_cls: type[S],
    flags: Mapping[str, Any],
    serve: Callable[[S], Awaitable[None]],
) -> int:
    prog = f"tollway {name}"
    try:
        settings = with_flags(settings_cls, os.environ, flags)
    except SettingsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    logs.setup(name, str(getattr(settings, "log_level", "INFO")))
    build.export()
    try:
        run_loop(serve(settings), str(getattr(settings, "event_loop", "asyncio")))  # type: ignore[arg-type]
    except TierError as exc:
        print(f"{prog}: invalid tier table:\n{exc}", file=sys.stderr)
        return 2
    except StripeNotConfigured as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0
