"""``tollway usage spool list|load|drop``: the spool files authz left (tollway/spool.py), for
the operator to place.

authz loads a file only into the store it was counted for. A file of another store (a host
moved from staging to production, a Redis migration, a store emptied by FLUSHALL) or of no
known store waits here until an operator says where it goes:

- ``list``: each file, its store, requests, age and writer, and this store's id;
- ``load FILE --into-this-store``: add its usage to the store at --redis-url (each count
  once: a load cut short can be run again), then remove the file;
- ``drop FILE --reason TEXT``: remove it, billing nothing.

Both are recorded in the audit log of the store at --redis-url (actor ``cli``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from authz.settings import AuthzSettings
from cli.store_access import add_store_flags, settings_of, with_store
from tollway import spool
from tollway.key_store import KeyStore
from tollway.process import CliError, Subparsers
from tollway.store_identity import store_id


def register(usage: Subparsers) -> None:
    p = usage.add_parser("spool", help="usage authz spooled to files: list, load, drop")
    actions = p.add_subparsers(dest="spool_command", required=True)
    listed = actions.add_parser("list", help="each spool file: its store, requests, age")
    load = actions.add_parser("load", help="add a spool file's usage to this store")
    load.add_argument("file", type=Path)
    load.add_argument(
        "--into-this-store",
        action="store_true",
        help="required: the file's usage is billed in the store at --redis-url",
    )
    drop = actions.add_parser("drop", help="remove a spool file, billing nothing")
    drop.add_argument("file", type=Path)
    drop.add_argument("--reason", required=True, help="why (kept in the audit log)")
    for sub in (listed, load, drop):
        sub.add_argument("--spool-dir", type=Path, help="where (default: $TOLLWAY_SPOOL_DIR)")
        add_store_flags(sub)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(AuthzSettings, args, spool_dir=args.spool_dir)
    directory = settings.spool_dir
    if args.spool_command == "list":
        return with_store(settings, lambda keys: _list(keys, directory))
    path = _in(directory, args.file)
    if args.spool_command == "load":
        if not args.into_this_store:
            raise CliError(
                "say --into-this-store: the file's usage is then billed in the store at "
                "--redis-url, whatever store it was counted for"
            )
        return with_store(settings, lambda keys: _load(keys, path))
    return with_store(settings, lambda keys: _drop(keys, path, args.reason))


def _in(directory: Path, file: Path) -> Path:
    """``file`` as given, or by its name in the spool directory."""
    path = file if file.exists() else directory / file.name
    if not path.is_file() or not path.name.endswith(spool.SUFFIX):
        raise CliError(f"no spool file {file} (tollway usage spool list)")
    return path


async def _list(keys: KeyStore, directory: Path) -> int:
    here = await store_id(keys.redis)
    print(f"this store: {here}   spool directory: {directory}")
    print(f"{'file':<48} {'store':<17} {'requests':>9} {'age':>8}  written by")
    now = time.time()
    for f in spool.listing(directory):
        store = f.store or "unknown"
        mark = "" if f.store == here else "  (another store)" if f.store else "  (unknown store)"
        bad = f"  {f.unreadable} unreadable lines" if f.unreadable else ""
        age = _age(now - f.written)
        print(f"{f.path.name:<48} {store:<17} {f.requests:>9} {age:>8}  {f.by}{mark}{bad}")
    return 0


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


async def _load(keys: KeyStore, path: Path) -> int:
    here = await store_id(keys.redis)
    claimed = spool.claim(path)  # (not also loaded by an authz starting now)
    if claimed is None:
        raise CliError(f"{path} is gone: another process took it")
    found = spool.read(claimed)
    try:
        n = await spool.add_usage(keys.redis, found.rows)
    except BaseException:
        # Nothing lost: run it again (each count is added once). Not awaited: this must run
        # when the command is interrupted too.
        claimed.rename(path)
        raise
    await asyncio.to_thread(claimed.unlink)
    await _record(keys, "spool_loaded", path, found, into=here)
    print(f"loaded {n} requests from {path.name} into store {here}")
    return 0


async def _drop(keys: KeyStore, path: Path, reason: str) -> int:
    here = await store_id(keys.redis)  # (the audit log it is recorded in)
    found = spool.read(path)
    await asyncio.to_thread(path.unlink)
    await _record(keys, "spool_dropped", path, found, reason=reason, recorded_in=here)
    print(f"dropped {path.name}: {found.requests} requests, not billed")
    return 0


async def _record(
    keys: KeyStore, action: str, path: Path, found: spool.SpoolFile, **more: object
) -> None:
    await keys.audit.record(
        "cli",
        action,
        f"spool:{path.name}",
        counted_for=found.store or "unknown",
        requests=found.requests,
        unreadable_lines=found.unreadable,
        **more,
    )
