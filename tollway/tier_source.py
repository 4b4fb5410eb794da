"""The tier table a process runs on: loaded and validated at start, reloaded on SIGHUP.

authz, webhook and metering each hold one ``TierSource``. Calling it returns the table in
force. ``reload()`` reads the file again: a valid file replaces the table whole (and is handed
to every ``on_change`` listener, such as authz's check policy); an invalid one is rejected
whole, the old table stays, and the rejection is logged with every problem. Both outcomes are
counted in ``tollway_tier_reloads_total{result="ok"|"rejected"}``, the same metric in every
service. Raises ``TierError`` at construction for a bad file: a service does not start on one.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Counter

from tollway.logs import fields
from tollway.tiers import TierError, TierTable, load_tiers

log = logging.getLogger("tollway.tiers")

RELOADS = Counter("tollway_tier_reloads_total", "Tier table reloads (SIGHUP)", ["result"])


class TierSource:
    def __init__(
        self, path: Path | str, on_change: Callable[[TierTable], None] | None = None
    ) -> None:
        self.path = Path(path)
        self.table = load_tiers(self.path)
        self._listeners = [on_change] if on_change is not None else []

    def __call__(self) -> TierTable:
        return self.table

    def on_change(self, listener: Callable[[TierTable], None]) -> None:
        self._listeners.append(listener)

    def reload(self) -> bool:
        """Read the file again; True if the new table is in force, False if it was rejected."""
        try:
            table = load_tiers(self.path)
        except TierError as exc:
            RELOADS.labels("rejected").inc()
            log.error("tiers_reload_rejected", extra=fields(problems=exc.problems))
            return False
        self.table = table
        for listener in self._listeners:
            listener(table)
        RELOADS.labels("ok").inc()
        log.info("tiers_reloaded", extra=fields(path=table.source, tiers=sorted(table.tiers)))
        return True

    def reload_on_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGHUP, self.reload)
