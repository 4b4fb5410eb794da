"""``tollway authz`` (and ``python -m authz``): the ext_authz server, gRPC or HTTP."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from authz.server import Worker
from authz.settings import AuthzSettings
from authz.workers import supervise
from tollway import logs, process
from tollway.settings import SettingsError, with_flags

# Flag name -> settings field, for the flags that override a TOLLWAY_* setting.
FLAGS = {
    "mode": "mode",
    "host": "host",
    "port": "port",
    "metrics_port": "metrics_port",
    "workers": "workers",
    "worker_port_base": "worker_port_base",
    "redis_url": "redis_url",
    "tiers": "tiers",
}


def register(subparsers: process.Subparsers) -> None:
    p = subparsers.add_parser("authz", help="run the ext_authz server", description=__doc__)
    p.add_argument(
        "--mode",
        choices=("grpc", "http"),
        help="Envoy's ext_authz transport: grpc_service or http_service (TOLLWAY_AUTHZ_MODE)",
    )
    p.add_argument("--host", help="bind address (TOLLWAY_AUTHZ_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port Envoy calls (TOLLWAY_AUTHZ_PORT, default 9191)")
    p.add_argument("--metrics-port", type=int, help="/metrics port, 0 = off (default 9192)")
    p.add_argument("--workers", type=int, help="worker processes (TOLLWAY_AUTHZ_WORKERS)")
    p.add_argument(
        "--worker-port-base",
        type=int,
        help="worker i also listens on this + i, for Envoy to balance over (TOLLWAY_AUTHZ_WORKER_PORT_BASE)",
    )
    p.add_argument("--redis-url", help="Redis URL (TOLLWAY_REDIS_URL)")
    p.add_argument("--tiers", type=Path, help="tier table path (TOLLWAY_TIERS)")
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)


def _flags(args: argparse.Namespace) -> dict[str, object]:
    return {field: getattr(args, flag) for flag, field in FLAGS.items()}


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> AuthzSettings:
    """The settings ``environ`` gives, with the flags that were set on top."""
    return with_flags(AuthzSettings, environ, _flags(args))


def _worker_argv(args: argparse.Namespace) -> list[str]:
    """The flags given, as argv again, for each worker the supervisor starts."""
    argv: list[str] = []
    for flag in FLAGS:
        value = getattr(args, flag)
        if value is not None and flag != "workers":
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    return argv


def run(args: argparse.Namespace) -> int:
    if args.worker_index is None:
        try:
            settings = settings_from(args, os.environ)
        except SettingsError as exc:
            print(f"tollway authz: {exc}", file=sys.stderr)
            return 2
        if settings.workers > 1:
            logs.setup("authz", settings.log_level)
            return supervise(settings.workers, _worker_argv(args))

    async def serve(settings: AuthzSettings) -> None:
        await Worker(settings, args.worker_index or 0).run()

    return process.run("authz", AuthzSettings, _flags(args), serve)
