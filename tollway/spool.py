"""Usage that outlived its process: spool files, each for one store.

An authz process that stops with usage it could not write (its Redis away, leases settled at
shutdown) saves it to a spool file in ``TOLLWAY_SPOOL_DIR`` (authz/usage_buffer.py). A file is
one save, written whole (to a temporary name, then renamed): a header line, then one line per
count::

    {"spool": 1, "store": "<store id>", "written": <epoch s>, "by": "<host>:<pid> <name>"}
    {"source": "<account or key id>", "window": <start>, "n": <requests>, "id": "<write id>"}

``store`` is the id of the store the usage was counted for (tollway/store_identity.py; ""
when the process never reached its store, and for files written before stores had ids). A
file goes back only into its own store: authz loads its store's files at start, and any
other waits for an operator (``tollway usage spool list|load|drop``). Every count carries a
write id, and ``add_usage`` adds each id once, so a load cut short and run again counts
nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tollway import schema, scripts

VERSION = 1
SUFFIX = ".jsonl"
MARKER_TTL_S = 7 * 86400  # how long a write id is remembered: longer than a spool should wait


@dataclass(frozen=True)
class SpoolRow:
    source: str  # an account, or a key id (usage counted before its account was known)
    window: int  # the window's start, epoch s
    n: int
    write_id: str


@dataclass(frozen=True)
class SpoolFile:
    path: Path
    store: str  # "" unknown
    written: int  # epoch s (a file without a header: its modification time)
    by: str
    rows: tuple[SpoolRow, ...]
    unreadable: int = 0  # lines that could not be read: never loaded (listings show them)

    @property
    def requests(self) -> int:
        return sum(r.n for r in self.rows)


def write(directory: Path, name: str, store: str, rows: Iterable[SpoolRow]) -> Path | None:
    """A new spool file of ``rows`` counted for ``store``, in ``directory``; None if there
    were none."""
    rows = list(rows)
    if not rows:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.{int(time.time())}.{secrets.token_hex(4)}{SUFFIX}"
    header = {
        "spool": VERSION,
        "store": store,
        "written": int(time.time()),
        "by": f"{socket.gethostname()}:{os.getpid()} {name}",
    }
    lines = [json.dumps(header)]
    lines += [
        json.dumps({"source": r.source, "window": r.window, "n": r.n, "id": r.write_id})
        for r in rows
    ]
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    partial.rename(path)  # whole, or not there
    return path


def read(path: Path) -> SpoolFile:
    """The file at ``path``. A line that cannot be read is counted in ``unreadable``; a count
    without a write id (written before ids were) gets one drawn from the file and the line,
    the same on every read. Raises OSError if the file cannot be read."""
    store, by, written = "", "", int(path.stat().st_mtime)
    rows: list[SpoolRow] = []
    unreadable = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        try:
            row = json.loads(line)
            if number == 0 and isinstance(row, dict) and "spool" in row:
                store, by = str(row.get("store") or ""), str(row.get("by") or "")
                written = int(row.get("written") or written)
                continue
            write_id = str(row.get("id") or _drawn_id(path, number))
            source = str(row.get("source") or row["key_id"])  # key_id: before 2026-12
            rows.append(SpoolRow(source, int(row["window"]), int(row["n"]), write_id))
        except (ValueError, KeyError, TypeError, AttributeError):
            unreadable += 1
    return SpoolFile(path, store, written, by, tuple(rows), unreadable)


def _drawn_id(path: Path, line: int) -> str:
    return hashlib.sha256(f"{path.name}:{line}".encode()).hexdigest()[:16]


def listing(directory: Path) -> list[SpoolFile]:
    """Every spool file in ``directory``, oldest first (files another process is loading, or
    that cannot be read, are left out)."""
    found = []
    for path in sorted(directory.glob(f"*{SUFFIX}")) if directory.is_dir() else []:
        try:
            found.append(read(path))
        except OSError:
            continue
    return sorted(found, key=lambda f: (f.written, f.path.name))


def claim(path: Path) -> Path | None:
    """Take ``path`` for this process by renaming it; None if another process took it first
    (so two authz workers starting together never both load one file)."""
    claimed = path.with_name(f"{path.name}.{os.getpid()}.claimed")
    try:
        path.rename(claimed)
    except FileNotFoundError:
        return None
    return claimed


async def add_usage(redis: Any, rows: Iterable[SpoolRow]) -> int:
    """Add ``rows`` to the usage hashes check.lua counts in, each write id once
    (usage_add.lua); returns the requests in them. Raises what Redis raises: run it again
    with the same rows, and what was added is not added twice."""
    rows = list(rows)
    calls = [
        (
            (schema.usage(r.source), schema.applied_marker(r.source, r.write_id)),
            (str(r.window), str(r.n), str(MARKER_TTL_S)),
        )
        for r in rows
    ]
    if calls:
        await scripts.run_many(scripts.register(redis, "usage_add"), calls)
    return sum(r.n for r in rows)
