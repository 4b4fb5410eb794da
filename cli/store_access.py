"""What the operator's commands share: the --redis-url/--tiers flags, and a KeyStore for one
command's run, with an unreachable Redis reported as one line."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from redis.exceptions import RedisError

from tollway.audit import AuditLog
from tollway.clock import WallClock
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.lifecycle import Lifecycle
from tollway.process import CliError
from tollway.redis_client import connect
from tollway.settings import RedisSettings, redacted, with_flags

S = TypeVar("S", bound=RedisSettings)


def add_store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", help="Redis URL (default: $TOLLWAY_REDIS_URL)")
    p.add_argument("--tiers", type=Path, help="tier table (default: $TOLLWAY_TIERS)")


def settings_of(cls: type[S], args: argparse.Namespace, **flags: object) -> S:
    """``cls`` from the environment, with --redis-url, --tiers and ``flags`` on top."""
    return with_flags(cls, os.environ, {"redis_url": args.redis_url, "tiers": args.tiers, **flags})


def lifecycle(store: KeyStore) -> Lifecycle:
    """The one lifecycle (tollway/lifecycle.py) on ``store``, on this machine's clock."""
    return Lifecycle(store, WallClock())


def with_store(settings: RedisSettings, fn: Callable[[KeyStore], Awaitable[int]]) -> int:
    """Run ``fn`` with a KeyStore on ``settings``' Redis; closes the connection after."""

    async def go() -> int:
        redis = connect(settings.redis_url, timeout_s=5.0)
        try:
            hasher = KeyHasher.configured(settings)
            return await fn(KeyStore(redis, hasher, AuditLog.configured(redis, settings)))
        except BrokenPipeError:
            raise  # stdout closed (| head): not Redis's doing (cli/main.py)
        except (RedisError, OSError) as exc:
            raise CliError(f"cannot reach Redis at {redacted(settings.redis_url)}: {exc}") from None
        finally:
            await redis.aclose()

    return asyncio.run(go())
