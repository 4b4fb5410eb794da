"""``tollway api serve`` (and ``python -m api``): the management API; ``tollway api openapi``
prints its OpenAPI document."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from api.openapi import document
from api.routes import OPERATIONS
from api.server import serve
from api.settings import ApiSettings
from tollway import process


def add_serve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="bind address (TOLLWAY_API_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (TOLLWAY_API_PORT, default 8084)")
    p.add_argument(
        "--verify-port", type=int, help="verify's own port (TOLLWAY_API_VERIFY_PORT, 8085; 0: none)"
    )
    p.add_argument("--redis-url", help="Redis URL (TOLLWAY_REDIS_URL)")
    p.add_argument("--tiers", type=Path, help="tier table path (TOLLWAY_TIERS)")


def run(args: argparse.Namespace) -> int:
    flags = {
        "host": args.host,
        "port": args.port,
        "verify_port": args.verify_port,
        "redis_url": args.redis_url,
        "tiers": args.tiers,
    }
    return process.run("api", ApiSettings, flags, serve)


def print_openapi() -> int:
    print(json.dumps(document(OPERATIONS), indent=2))
    return 0
