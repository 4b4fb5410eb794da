"""``tollway portal`` (and ``python -m portal``): the customer portal; ``tollway portal
alerts [list|failed|retry ID]`` shows the usage alerts raised (or the failed ones), and sends a
failed one again."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from portal.alerter import retry, stored
from portal.server import serve
from portal.settings import PortalSettings
from tollway import process
from tollway.process import CliError
from tollway.redis_client import connect
from tollway.settings import RedisSettings, redacted, with_flags


def register(subparsers: process.Subparsers) -> None:
    p = subparsers.add_parser("portal", help="run the customer portal", description=__doc__)
    p.add_argument("--host", help="bind address (TOLLWAY_PORTAL_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (TOLLWAY_PORTAL_PORT, default 8083)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (TOLLWAY_PORTAL_METRICS_PORT)")
    p.add_argument("--redis-url", help="Redis URL (TOLLWAY_REDIS_URL)")
    p.add_argument("--tiers", type=Path, help="tier table path (TOLLWAY_TIERS)")
    admin = p.add_subparsers(dest="portal_command", metavar="alerts")
    al = admin.add_parser("alerts", help="usage alerts: list them, or retry a failed one")
    al.add_argument("action", nargs="?", default="list", choices=["list", "failed", "retry"])
    al.add_argument("id", nargs="?", help="the alert id, for retry")
    al.add_argument("--redis-url", help="Redis URL (TOLLWAY_REDIS_URL)")


def run(args: argparse.Namespace) -> int:
    if args.portal_command == "alerts":
        settings = with_flags(RedisSettings, os.environ, {"redis_url": args.redis_url})
        return asyncio.run(alerts(settings.redis_url, args.action, args.id))
    flags = {"host": args.host, "port": args.port, "redis_url": args.redis_url, "tiers": args.tiers,
             "metrics_port": args.metrics_port}  # fmt: skip
    return process.run("portal", PortalSettings, flags, serve)


async def alerts(redis_url: str, action: str, alert_id: str | None) -> int:
    redis = connect(redis_url, timeout_s=5.0)
    try:
        return await _alerts(redis, action, alert_id)
    except BrokenPipeError:
        raise  # stdout closed (| head): not Redis's doing (cli/main.py)
    except (RedisError, OSError) as exc:
        raise CliError(f"cannot reach Redis at {redacted(redis_url)}: {exc}") from None
    finally:
        await redis.aclose()


async def _alerts(redis: Any, action: str, alert_id: str | None) -> int:
    if action in ("list", "failed"):
        for record in await stored(redis):
            if action == "list" or "failed" in (record["email"], record["webhook"]):
                print(json.dumps(record))
        return 0
    if not alert_id:
        raise CliError("alerts retry needs an alert id (see: tollway portal alerts failed)")
    if not await retry(redis, alert_id):
        raise CliError(f"no failed alert {alert_id}")
    print(f"retry: {alert_id} (the portal sends it on its next pass)", file=sys.stderr)
    return 0
