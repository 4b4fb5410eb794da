"""``python -m webhook``: the Stripe webhook service. ``tollway webhook`` runs the same thing."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tollway import logs
from tollway.settings import SettingsError, WebhookSettings, load
from tollway.tiers import TierError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tollway webhook", description=__doc__)
    p.add_argument("--host", help="bind address (TOLLWAY_WEBHOOK_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (TOLLWAY_WEBHOOK_PORT, default 8081)")
    p.add_argument("--redis-url", help="Redis URL (TOLLWAY_REDIS_URL)")
    p.add_argument("--tiers", type=Path, help="tier table path (TOLLWAY_TIERS)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        base = load(WebhookSettings, os.environ)
    except SettingsError as exc:
        print(f"tollway webhook: {exc}", file=sys.stderr)
        return 2
    flags = {"host": args.host, "port": args.port, "redis_url": args.redis_url, "tiers": args.tiers}
    settings = dataclasses.replace(base, **{k: v for k, v in flags.items() if v is not None})
    logs.setup("webhook", settings.log_level)
    from webhook.server import serve

    try:
        asyncio.run(serve(settings))
    except TierError as exc:
        print(f"tollway webhook: invalid tier table:\n{exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tollway webhook: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
