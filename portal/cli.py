"""``tollway portal`` (and ``python -m portal``): the customer portal (in progress)."""

from __future__ import annotations

import argparse
from pathlib import Path

from portal.server import serve
from portal.settings import PortalSettings
from tollway import process


def register(subparsers: process.Subparsers) -> None:
    p = subparsers.add_parser("portal", help="run the customer portal", description=__doc__)
    p.add_argument("--host", help="bind address (TOLLWAY_PORTAL_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (TOLLWAY_PORTAL_PORT, default 8083)")
    p.add_argument("--redis-url", help="Redis URL (TOLLWAY_REDIS_URL)")
    p.add_argument("--tiers", type=Path, help="tier table path (TOLLWAY_TIERS)")


def run(args: argparse.Namespace) -> int:
    flags = {"host": args.host, "port": args.port, "redis_url": args.redis_url, "tiers": args.tiers}
    return process.run("portal", PortalSettings, flags, serve)
