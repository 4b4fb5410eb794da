"""A pass every interval, made by one portal process of however many: the one that takes the
pass's lock (SET NX, expiring after the interval), so the keyspace is scanned once an interval,
not once per process. A failed pass is logged and the next one tries again; a process that
dies holding the lock loses one interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any


def owner() -> str:
    """This process's name on a pass's lock: host, pid and a random part (one per loop)."""
    return f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(4)}"


async def every(
    redis: Any,
    lock: str,
    owner: str,
    interval_s: float,
    stop: asyncio.Event,
    run_once: Callable[[], Awaitable[object]],
    log: logging.Logger,
    failed: str,
) -> None:
    """``run_once`` every ``interval_s`` until ``stop``, when this process takes ``lock``; a
    pass that raises is logged as ``failed``."""
    while not stop.is_set():
        try:
            if await redis.set(lock, owner, nx=True, px=max(1, int(interval_s * 1000))):
                await run_once()
        except Exception:  # Redis or Stripe away, a bug
            log.exception(failed)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
