"""``python -m authz``: the ext_authz gRPC server. ``tollway authz`` runs the same thing."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from authz.server import Worker
from authz.workers import supervise
from tollway import logs, service
from tollway.settings import AuthzSettings, SettingsError, with_flags


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tollway authz", description=__doc__)
    p.add_argument("--host", help="bind address (TOLLWAY_AUTHZ_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="gRPC port (TOLLWAY_AUTHZ_PORT, default 9191)")
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
    return p


def _flags(args: argparse.Namespace) -> dict[str, object]:
    return {
        "host": args.host,
        "port": args.port,
        "metrics_port": args.metrics_port,
        "workers": args.workers,
        "worker_port_base": args.worker_port_base,
        "redis_url": args.redis_url,
        "tiers": args.tiers,
    }


def settings_from(args: argparse.Namespace) -> AuthzSettings:
    return with_flags(AuthzSettings, os.environ, _flags(args))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.worker_index is None:
        try:
            settings = settings_from(args)
        except SettingsError as exc:
            print(f"tollway authz: {exc}", file=sys.stderr)
            return 2
        if settings.workers > 1:
            logs.setup("authz", settings.log_level)
            return supervise(settings.workers, argv)

    async def serve(settings: AuthzSettings) -> None:
        await Worker(settings, args.worker_index or 0).run()

    return service.run("authz", AuthzSettings, _flags(args), serve)


if __name__ == "__main__":
    sys.exit(main())
