"""Work done after an answer: kept until it ends, its failure logged, never raised.

A page that mails a link, or looks up who an address belongs to, answers first so that its
timing tells a stranger nothing; what it started then runs here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from tollway.logs import fields


class Background:
    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._tasks: set[asyncio.Future[Any]] = set()

    def run(self, work: Awaitable[Any], what: str) -> None:
        """Start ``work``; if it fails, log ``<what>_failed`` with the error."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, what))

    def _done(self, task: asyncio.Future[Any], what: str) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error(f"{what}_failed", extra=fields(error=str(task.exception())))

    async def idle(self) -> None:
        """Wait until nothing started here is still running (tests; a clean shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
