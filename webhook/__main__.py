"""``python -m webhook``: the Stripe webhook service. ``tollway webhook`` runs the same thing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tollway import service
from tollway.settings import WebhookSettings
from webhook.server import serve


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tollway webhook", description=__doc__)
    p.add_argument("--host", help="bind address (TOLLWAY_WEBHOOK_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (TOLLWAY_WEBHOOK_PORT, default 8081)")
    p.add_argument("--redis-url", help="Redis URL (TOLLWAY_REDIS_URL)")
    p.add_argument("--tiers", type=Path, help="tier table path (TOLLWAY_TIERS)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    flags = {"host": args.host, "port": args.port, "redis_url": args.redis_url, "tiers": args.tiers}
    return service.run("webhook", WebhookSettings, flags, serve)


if __name__ == "__main__":
    sys.exit(main())
