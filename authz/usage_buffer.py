"""Usage let through while Redis was unreachable, kept until it can be written back.

Counts are per (usage source: the account, or a key id; window start). ``flush`` adds them to the same usage hashes check.lua
increments, so metering sees no difference. ``save``/``load`` keep them across a restart.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

from tollway import schema, scripts

log = logging.getLogger("tollway.authz.usage")
MARKER_TTL_S = 7 * 86400  # longer than any outage a spool file may wait through


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
        for (key_id, window), n in self._counts.items():
            self._sent[secrets.token_hex(8)] = (key_id, window, n)
        self._counts.clear()
        if not self._sent:
            return 0
        batch = dict(self._sent)
        calls = [
            (
                (schema.usage(source), schema.applied_marker(source, write_id)),
                (str(window), str(n), str(MARKER_TTL_S)),
            )
            for write_id, (source, window, n) in batch.items()
        ]
        await scripts.run_many(scripts.register(redis, "usage_add"), calls)
        for write_id in batch:
            del self._sent[write_id]
        written = sum(n for _, _, n in batch.values())
        self._total -= written
        return written

    def save(self, directory: Path, name: str) -> Path | None:
        """Append pending counts to a spool file in ``directory``; None if there were none."""
        if not self._counts and not self._sent:
            return None
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.jsonl"
        with path.open("a", encoding="utf-8") as f:
            for (key_id, window), n in self._counts.items():
                f.write(json.dumps({"key_id": key_id, "window": window, "n": n}) + "\n")
            for write_id, (key_id, window, n) in self._sent.items():
                row = {"key_id": key_id, "window": window, "n": n, "id": write_id}
                f.write(json.dumps(row) + "\n")
        self._counts.clear()
        self._sent.clear()
        self._total = 0
        return path

    def load(self, directory: Path) -> int:
        """Take in every spool file in ``directory``; returns requests loaded.

        Each file is claimed by an atomic rename first, so two workers starting together never
        both load (and so double-count) the same file.
        """
        total = 0
        for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else []:
            claimed = path.with_name(f"{path.name}.{os.getpid()}.claimed")
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue  # another worker claimed it
            for line in claimed.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    entry = (str(row["key_id"]), int(row["window"]), int(row["n"]))
                    if row.get("id"):
                        self._sent[str(row["id"])] = entry
                    else:
                        self._counts[entry[:2]] += entry[2]
                    self._total += entry[2]
                    total += int(row["n"])
                except (ValueError, KeyError, TypeError):
                    log.error("unreadable spool line in %s, not loaded: %r", path, line[:200])
            claimed.unlink()
        return total
