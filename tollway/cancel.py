"""A cancellation redis-py hid: cancelled in the middle of a command, redis-py's asyncio client
may drop the connection and raise its own ConnectionError instead of CancelledError. A loop
that treats that as "Redis is away, retry later" would then never end: ``stop`` cancelling it
waits forever (seen when the check engine stops while its eviction watch or its key-changes
listener is reading). Such a loop asks ``reraise_if_cancelled`` in its handler and after each call; whoever
stops it uses ``stop_tasks``, which asks again."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

# How often stop_tasks asks, and how long it waits each time.
TRIES = 4
WAIT_S = 0.25


def reraise_if_cancelled() -> None:
    """Raise CancelledError if the running task was asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_tasks(tasks: Collection[asyncio.Task[None]]) -> bool:
    """Cancel ``tasks`` and wait for them to end, cancelling again those that swallowed it
    (each ask cancels what the task waits on now); whether all ended."""
    pending = set(tasks)
    for _ in range(TRIES):
        if not pending:
            return True
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=WAIT_S)
    return not pending
