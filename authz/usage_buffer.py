"""Usage let through while Redis was unreachable, kept until it can be written back.

Counts are per (key id, window start). ``flush`` adds them to the same usage hashes check.lua
increments, so metering sees no difference. ``save``/``load`` keep them across a restart.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from tollway import schema

log = logging.getLogger("tollway.authz.usage")


class UsageBuffer:
    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        self._counts: Counter[tuple[str, int]] = Counter()
        self._total = 0  # kept, not summed: len() is read on every degraded request

    def __len__(self) -> int:
        return self._total

    def add(self, key_id: str, now_s: float, n: int = 1) -> None:
        now = int(now_s)
        self._counts[(key_id, now - now % self.window_s)] += n
        self._total += n

    async def flush(self, redis: Any) -> int:
        """Write every pending count to Redis; returns how many requests were written.

        Raises whatever Redis raises; counts are only forgotten after the pipeline succeeds.
        """
        if not self._counts:
            return 0
        batch = dict(self._counts)
        async with redis.pipeline(transaction=False) as pipe:
            for (key_id, window), n in batch.items():
                pipe.hincrby(schema.key_usage(key_id), str(window), n)
            await pipe.execute()
        self._counts.subtract(batch)
        self._counts = +self._counts  # drop zeros; counts added meanwhile stay
        written = sum(batch.values())
        self._total -= written
        return written

    def save(self, directory: Path, name: str) -> Path | None:
        """Append pending counts to a spool file in ``directory``; None if there were none."""
        if not self._counts:
            return None
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.jsonl"
        with path.open("a", encoding="utf-8") as f:
            for (key_id, window), n in self._counts.items():
                f.write(json.dumps({"key_id": key_id, "window": window, "n": n}) + "\n")
        self._counts.clear()
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
                    self._counts[(str(row["key_id"]), int(row["window"]))] += int(row["n"])
                    self._total += int(row["n"])
                    total += int(row["n"])
                except (ValueError, KeyError, TypeError):
                    log.error("unreadable spool line in %s, not loaded: %r", path, line[:200])
            claimed.unlink()
        return total
