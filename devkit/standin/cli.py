"""``tollway stripe-standin`` (and ``python -m devkit.standin``): the local Stripe stand-in."""

from __future__ import annotations

import argparse
import os
import sys

from aiohttp import web

from devkit.settings import StandinSettings
from devkit.standin.app import Standin
from devkit.standin.objects import World
from tollway import logs
from tollway.process import Subparsers
from tollway.settings import SettingsError, with_flags


def register(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "stripe-standin", help="run the local Stripe stand-in", description=__doc__
    )
    p.add_argument("--port", type=int, help="HTTP port (TOLLWAY_STANDIN_PORT, default 12111)")
    p.add_argument("--webhook-url", help="deliver signed events here (TOLLWAY_STANDIN_WEBHOOK_URL)")


def run(args: argparse.Namespace) -> int:
    flags = {"standin_port": args.port, "webhook_url": args.webhook_url}
    try:
        s = with_flags(StandinSettings, os.environ, flags)
    except SettingsError as exc:
        print(f"tollway stripe-standin: {exc}", file=sys.stderr)
        return 2
    logs.setup("standin")
    world = World(s.public_url.rstrip("/") or f"http://{s.host}:{s.standin_port}")
    secret = s.secrets[0] if s.secrets else ""
    standin = Standin(world, webhook_url=s.webhook_url, webhook_secret=secret)
    web.run_app(standin.build(), host=s.host, port=s.standin_port, print=None, access_log=None)
    return 0
