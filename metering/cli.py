"""``tollway metering`` (and ``python -m metering``): the daemon that drains usage into Stripe
Billing Meter Events; ``tollway metering receive`` runs Envoy's access-log receiver (refunds
and reported amounts, metering/receiver.py); ``tollway metering dead-letters [list|retry
ID|drop ID]`` tends what Stripe refused, and refunds that found no window."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from metering import receiver
from metering.ledger import Ledger
from metering.server import serve
from metering.settings import SINKS, MeteringSettings, ReceiverSettings
from tollway import process
from tollway.process import CliError
from tollway.redis_client import connect
from tollway.settings import with_flags


def register(subparsers: process.Subparsers) -> None:
    p = subparsers.add_parser(
        "metering", help="run the metering daemon, or tend its dead letters", description=__doc__
    )
    p.add_argument(
        "--interval", type=float, help="seconds between drains (TOLLWAY_METERING_INTERVAL, 60)"
    )
    p.add_argument(
        "--port", type=int, help="/healthz and /metrics port (TOLLWAY_METERING_PORT, 8082)"
    )
    p.add_argument("--redis-url", help="Redis URL (TOLLWAY_REDIS_URL)")
    p.add_argument("--tiers", type=Path, help="tier table path (TOLLWAY_TIERS)")
    p.add_argument(
        "--sink",
        choices=SINKS,
        help="v1 meter events, or the v2 meter event stream (TOLLWAY_METERING_SINK, v1)",
    )
    admin = p.add_subparsers(dest="metering_command", metavar="dead-letters | receive")
    rx = admin.add_parser("receive", help="run Envoy's access-log receiver")
    rx.add_argument("--port", type=int, help="gRPC port (TOLLWAY_ACCESSLOG_PORT, 9193)")
    rx.add_argument(
        "--metrics-port",
        type=int,
        help="/healthz and /metrics (TOLLWAY_ACCESSLOG_METRICS_PORT, 9194)",
    )
    rx.add_argument("--redis-url", help="Redis URL (TOLLWAY_REDIS_URL)")
    rx.add_argument("--tiers", type=Path, help="tier table path (TOLLWAY_TIERS)")
    dl = admin.add_parser("dead-letters", help="meter events Stripe refused")
    dl.add_argument("action", nargs="?", default="list", choices=["list", "retry", "drop"])
    dl.add_argument("id", nargs="?")
    dl.add_argument("--redis-url", help="Redis URL (TOLLWAY_REDIS_URL)")
    dl.add_argument("--tiers", type=Path, help="tier table path (TOLLWAY_TIERS)")


def run(args: argparse.Namespace) -> int:
    if args.metering_command == "receive":
        flags = {
            "port": args.port,
            "metrics_port": args.metrics_port,
            "redis_url": args.redis_url,
            "tiers": args.tiers,
        }
        return process.run("metering receive", ReceiverSettings, flags, receiver.serve)
    if args.metering_command == "dead-letters":
        settings = with_flags(
            MeteringSettings, os.environ, {"redis_url": args.redis_url, "tiers": args.tiers}
        )
        return asyncio.run(dead_letters(settings, args.action, args.id))
    flags = {
        "interval_s": args.interval,
        "port": args.port,
        "redis_url": args.redis_url,
        "tiers": args.tiers,
        "sink": args.sink,
    }
    return process.run("metering", MeteringSettings, flags, serve)


async def dead_letters(settings: MeteringSettings, action: str, identifier: str | None) -> int:
    redis = connect(settings.redis_url, timeout_s=5.0)
    ledger = Ledger(redis, settings.usage_window_s, 0)
    try:
        if action == "list":
            for ident, rec in sorted((await ledger.dead_letters()).items()):
                print(json.dumps({"id": ident, **rec}))
            return 0
        if identifier is None:
            raise CliError(f"dead-letters {action} needs an id")
        act = ledger.retry_dead_letter if action == "retry" else ledger.drop_dead_letter
        try:
            done = await act(identifier)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if not done:
            raise CliError(f"no dead letter {identifier}")
        print(f"{action}: {identifier}", file=sys.stderr)
        return 0
    finally:
        await redis.aclose()
