"""Client CPU per EVALSHA: redis-py's asyncio pipeline against authz's lean client
(authz/redis_pipe.py), the same script and batches, in one process, on uvloop.

Each round sends ``batch`` EVALSHAs of a one-key script as one pipeline, ``rounds`` times;
the figure is this process's CPU time (time.process_time) per EVALSHA, so Redis's own CPU is
not in it.

    python bench/redis_clients.py --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authz.redis_pipe import open_pipe
from tollway.redis_client import connect

SCRIPT = "return redis.call('HINCRBY', KEYS[1], 'n', 1)"


async def _measure(
    send: Callable[[list[tuple[Any, ...]]], Awaitable[list[Any]]],
    commands: list[tuple[Any, ...]],
    rounds: int,
) -> float:
    for _ in range(10):  # warm: connections, caches
        await send(commands)
    cpu = time.process_time()
    for _ in range(rounds):
        replies = await send(commands)
        assert len(replies) == len(commands)
    return (time.process_time() - cpu) / (rounds * len(commands)) * 1e6


async def compare(url: str, batch: int = 32, rounds: int = 300) -> dict[str, float]:
    """{"redis-py": µs, "lean": µs} of client CPU per EVALSHA."""
    pyclient = connect(url)
    lean = open_pipe(url, timeout_s=5.0)
    try:
        sha = await pyclient.script_load(SCRIPT)
        commands = [("EVALSHA", sha, 1, f"bench:{{k{i % 8}}}") for i in range(batch)]

        async def redis_py(cmds: list[tuple[Any, ...]]) -> list[Any]:
            pipe = pyclient.pipeline(transaction=False)
            for cmd in cmds:
                pipe.execute_command(*cmd)
            return list(await pipe.execute(raise_on_error=False))

        return {
            "redis-py": await _measure(redis_py, commands, rounds),
            "lean": await _measure(lean.execute, commands, rounds),
        }
    finally:
        await pyclient.aclose()
        await lean.aclose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--redis-url", required=True)
    args = ap.parse_args()
    out = uvloop.run(compare(args.redis_url))
    print(", ".join(f"{k} {v:.1f} µs" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
