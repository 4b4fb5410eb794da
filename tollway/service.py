"""Run a service command: settings from environment and flags, JSON logs, its async main.

Exit codes, the same for every tollway service: 0 after a clean stop, 1 when it cannot run
(a port already in use, say), 2 for bad configuration (a setting, the tier table, Stripe keys).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from tollway import logs
from tollway.settings import SettingsError, with_flags
from tollway.stripe_api import StripeNotConfigured
from tollway.tiers import TierError

S = TypeVar("S")


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
