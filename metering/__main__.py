"""``python -m metering``: drain usage into Stripe Billing Meter Events. Also ``tollway metering``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from metering.server import serve
from tollway import service
from tollway.settings import MeteringSettings


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tollway metering", description=__doc__)
    p.add_argument(
        "--interval", type=float, help="seconds between drains (TOLLWAY_METERING_INTERVAL, 60)"
    )
    p.add_argument(
        "--port", type=int, help="/healthz and /metrics port (TOLLWAY_METERING_PORT, 8082)"
    )
    p.add_argument("--redis-url", help="Redis URL (TOLLWAY_REDIS_URL)")
    p.add_argument("--tiers", type=Path, help="tier table path (TOLLWAY_TIERS)")
    p.add_argument(
        "--mode",
        choices=["v1", "stream"],
        help="v1 meter events, or the v2 meter event stream (TOLLWAY_METERING_MODE, v1)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    flags = {
        "interval_s": args.interval,
        "port": args.port,
        "redis_url": args.redis_url,
        "tiers": args.tiers,
        "mode": args.mode,
    }
    return service.run("metering", MeteringSettings, flags, serve)


if __name__ == "__main__":
    sys.exit(main())
