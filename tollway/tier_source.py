"""The tier table a process runs on: loaded and validated at start, reloaded on SIGHUP and
when its file changes.

Every service holds one ``TierSource``. Calling it returns the table in
force. ``reload()`` reads the file again: a valid file replaces the table whole (and is handed
to every ``on_change`` listener, such as authz's check policy); an invalid one is rejected
whole, the old table stays, and the rejection is logged with every problem. Both outcomes are
counted in ``tollway_tier_reloads_total{result="ok"|"rejected"}``, the same metric in every
service. Raises ``TierError`` at construction for a bad file: a service does not start on one.

``follow`` reloads on SIGHUP, and whenever the file the path leads to changes: its device,
inode, modification time or size, read every ``WATCH_S`` through any symlinks. A Kubernetes
ConfigMap volume updates by swapping a ``..data`` symlink to a new directory, so the path
then leads to another inode; an editor's in-place write changes the modification time. A
file that vanishes keeps the table in force until one is there again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Counter

from tollway.logs import fields
from tollway.tiers import TierError, TierTable, load_tiers

log = logging.getLogger("tollway.tiers")

RELOADS = Counter(
    "tollway_tier_reloads_total", "Tier table reloads (SIGHUP, or the file changed)", ["result"]
)
WATCH_S = 2.0
FileIdentity = tuple[int, int, int, int]


class TierSource:
    def __init__(
        self, path: Path | str, on_change: Callable[[TierTable], None] | None = None
    ) -> None:
        self.path = Path(path)
        self._seen = self._identity()  # before reading: a change meanwhile is read again
        self.table = load_tiers(self.path)
        self._listeners = [on_change] if on_change is not None else []
        self._watch: asyncio.Task[None] | None = None

    def __call__(self) -> TierTable:
        return self.table

    def on_change(self, listener: Callable[[TierTable], None]) -> None:
        self._listeners.append(listener)

    def reload(self, cause: str = "sighup") -> bool:
        """Read the file again; True if the new table is in force, False if it was rejected."""
        self._seen = self._identity()
        try:
            table = load_tiers(self.path)
        except TierError as exc:
            RELOADS.labels("rejected").inc()
            log.error("tiers_reload_rejected", extra=fields(cause=cause, problems=exc.problems))
            return False
        self.table = table
        for listener in self._listeners:
            listener(table)
        RELOADS.labels("ok").inc()
        log.info(
            "tiers_reloaded",
            extra=fields(cause=cause, path=table.source, tiers=sorted(table.tiers)),
        )
        return True

    def follow(self, loop: asyncio.AbstractEventLoop, interval_s: float = WATCH_S) -> None:
        """Reload on SIGHUP, and when the file changes (checked every ``interval_s``)."""
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self._watch = loop.create_task(self.watch(interval_s))

    async def watch(self, interval_s: float = WATCH_S) -> None:
        """Reload whenever the file the path leads to is another one, or was written."""
        while True:
            await asyncio.sleep(interval_s)
            now = self._identity()
            if now is not None and now != self._seen:
                self.reload(cause="file_changed")

    def _identity(self) -> FileIdentity | None:
        try:
            st = os.stat(self.path)  # through symlinks: a ConfigMap's swap leads elsewhere
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
