"""``tollway webhook`` (and ``python -m webhook``): the Stripe webhook service."""

from __future__ import annotations

import argparse
from pathlib import Path

from tollway import process
from webhook.server import serve
from webhook.settings import WebhookSettings


def register(subparsers: process.Subparsers) -> None:
    p = subparsers.add_parser("webhook", help="run the Stripe webhook service", description=__doc__)
    p.add_argument("--host", help="bind address (TOLLWAY_WEBHOOK_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (TOLLWAY_WEBHOOK_PORT, default 8081)")
    p.add_argument("--redis-url", help="Redis URL (TOLLWAY_REDIS_URL)")
    p.add_argument("--tiers", type=Path, help="tier table path (TOLLWAY_TIERS)")


def run(args: argparse.Namespace) -> int:
    flags = {"host": args.host, "port": args.port, "redis_url": args.redis_url, "tiers": args.tiers}
    return process.run("webhook", WebhookSettings, flags, serve)
