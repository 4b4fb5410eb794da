"""Usage let through while Redis was unreachable, kept until it can be written back.

Counts are per (usage source: the account, or a key id; window start). ``flush`` adds them
to the same usage hashes check.lua increments, so metering sees no difference. ``save`` and
``load`` keep them across a restart, in spool files of the store they were counted for
(tollway/spool.py).
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

from tollway import spool
from tollway.logs import fields
from tollway.spool import SpoolFile, SpoolRow

log = logging.getLogger("tollway.authz.usage")


class UsageBuffer:
    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        self._counts: Counter[tuple[str, int]] = Counter()
        # Counts whose write was sent and not confirmed, by write id. A retry sends the same
        # id, and usage_add.lua adds each id once, so an answer lost in transit (a frozen or
        # dying Redis) is never counted twice.
        self._sent: dict[str, tuple[str, int, int]] = {}
        self._total = 0  # kept, not summed: len() is read on every degraded request

    def __len__(self) -> int:
        return self._total

    def add(self, key_id: str, now_s: float, n: int = 1, write_id: str = "") -> None:
        """Count ``n`` requests. ``write_id``: they were part of a write with this id that may
        have reached Redis (a lease settlement); they keep the id, so they count once."""
        now = int(now_s)
        window = now - now % self.window_s
        if write_id:
            self._sent[write_id] = (key_id, window, n)
        else:
            self._counts[(key_id, window)] += n
        self._total += n

    async def flush(self, redis: Any) -> int:
        """Write every pending count to Redis; returns how many requests were written.

        Raises whatever Redis raises; counts are only forgotten after the pipeline succeeds,
        and are retried under the same write ids.
        """
        batch = self._rows()
        if not batch:
            return 0
        written = await spool.add_usage(redis, batch)
        for row in batch:
            del self._sent[row.write_id]
        self._total -= written
        return written

    def _rows(self) -> list[SpoolRow]:
        """Every pending count as a row with a write id (the counts without one get theirs
        now, and keep it until written)."""
        for (source, window), n in self._counts.items():
            self._sent[secrets.token_hex(8)] = (source, window, n)
        self._counts.clear()
        return [SpoolRow(src, window, n, wid) for wid, (src, window, n) in self._sent.items()]

    def save(self, directory: Path, name: str, store: str) -> Path | None:
        """Write pending counts, counted for ``store`` ("" unknown), to a new spool file in
        ``directory`` (tollway/spool.py); None if there were none."""
        path = spool.write(directory, name, store, self._rows())
        self._sent.clear()
        self._total = 0
        return path

    def load(self, directory: Path, store: str) -> tuple[int, list[SpoolFile]]:
        """Take in the spool files of ``store`` in ``directory``: (requests loaded, the files
        of other stores, left where they are). A file of an unknown store ("") is never
        loaded here: an operator says where it goes (``tollway usage spool load``).

        Each file is claimed by an atomic rename first, so two workers starting together never
        both load (and so double-count) the same file.
        """
        total = 0
        foreign = []
        for found in spool.listing(directory):
            if not store or found.store != store:
                foreign.append(found)
                continue
            claimed = spool.claim(found.path)
            if claimed is None:
                continue  # another worker claimed it
            mine = spool.read(claimed)
            if mine.unreadable:
                log.error(
                    "unreadable spool lines, not loaded",
                    extra=fields(path=str(found.path), lines=mine.unreadable),
                )
            for row in mine.rows:
                self._sent[row.write_id] = (row.source, row.window, row.n)
                self._total += row.n
                total += row.n
            claimed.unlink()
        return total, foreign
