"""Where Redis's time in check.lua goes: the server's own µs per call (INFO commandstats) of
check.lua and of its parts run alone, on one key of one account, with check.lua's own keys
and arguments, 20,000 calls each in pipelines of 500.

    python bench/check_script_parts.py

Each part adds one step of check.lua to the part before; what check.lua costs past the last
part is its own Lua logic (period, status, tier, bucket, quota) and its reply. The README's
Performance section accounts for Redis's CPU per check with it.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authz.check_tiers import CheckTiers
from bench.harness import PREPAID_BALANCE, TIERS
from devkit.stack import Ports, Stack
from tollway import schema, scripts
from tollway.credits import Credits, Movement
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.tiers import parse_tiers

RECORD = "local r = redis.call('HMGET', KEYS[1], 'hash', 'status', 'tier', 'customer', \
'grace_until', 'period_start', 'period_end', 'hold', 'expires_at', 'last_used')\n"
STATE = "local k = string.sub(KEYS[1], -16)\nlocal s = redis.call('HMGET', KEYS[2], 'tokens', \
'ts', 'q_period', 'q_used', 'n:' .. k, 'o_rate', 'o_burst', 'o_quota', 'o_features', \
'p:' .. k, 'period_start', 'period_end', 'hold')\n"
WRITES = "local t = redis.call('TIME')\nredis.call('HSET', KEYS[2], 'tokens', 5.5, 'ts', 7, \
'q_used', 9, 'n:' .. k, 3)\nredis.call('HINCRBY', KEYS[3], 60, 1)\n"
PARTS = [
    ("EVALSHA alone (return 1), with check.lua's keys and arguments", ""),
    ("+ read the key's record (HMGET, 10 fields)", RECORD),
    ("+ read the account's state (HMGET, 13 fields)", RECORD + STATE),
    (
        "+ TIME, write the state (HSET, 4 fields), count the window (HINCRBY)",
        RECORD + STATE + WRITES,
    ),
]
CALLS, PIPELINE = 20_000, 500


async def server_us(redis: Any, text: str, keys: list[str], args: list[str]) -> float:
    """Redis's own µs per call of script ``text``."""
    sha = await redis.script_load(text)
    await redis.config_resetstat()
    for _ in range(CALLS // PIPELINE):
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(PIPELINE):
                pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
            await pipe.execute()
    stats = (await redis.info("commandstats"))["cmdstat_evalsha"]
    return float(stats["usec"]) / float(stats["calls"])


async def main(url: str) -> None:
    from tollway.redis_client import connect

    redis = connect(url)
    key, record = await KeyStore(redis, KeyHasher()).create("bench", "cus_parts")
    tier_args = CheckTiers(parse_tiers(TIERS, "bench")).tier_args(None)("bench")
    keys = list(schema.check_keys(record.key_id, record.account, ""))
    # check.lua's ARGV as authz sends an exact check (authz/redis_check_store.py).
    args = [KeyHasher().digest(key), "", "1", "60", "2592000", "0", "0", "1", "", *tier_args]
    for name, body in [*PARTS, ("check.lua", None)]:
        text = scripts.lua("check") if body is None else body + "return 1"
        print(f"{await server_us(redis, text, keys, args):6.2f} µs  {name}", flush=True)
    # A prepaid tier's check against the same subscription-like one, alternating (3 rounds):
    # the balance read, its spending and the ledger's hour.
    paid_key, paid = await KeyStore(redis, KeyHasher()).create("bench_prepaid", "cus_paid")
    await Credits(redis).move(paid.account, "parts", PREPAID_BALANCE, Movement.GRANT, "", "")
    paid_args = CheckTiers(parse_tiers(TIERS, "bench")).tier_args(None)("bench_prepaid")
    paid_keys = list(schema.check_keys(paid.key_id, paid.account, ""))
    paid_argv = [KeyHasher().digest(paid_key), *args[1:9], *paid_args]
    for _ in range(3):
        sub = await server_us(redis, scripts.lua("check"), keys, args)
        pre = await server_us(redis, scripts.lua("check"), paid_keys, paid_argv)
        print(f"{sub:6.2f} µs  check.lua, subscription tier; {pre:6.2f} µs  prepaid tier")
    await redis.aclose()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        stack = Stack(Ports.free(), Path(d) / "tiers.toml", Path(d), lambda _n, _l: None)
        stack.start("redis")
        try:
            asyncio.run(main(stack.effective_redis_url))
        finally:
            stack.stop_all()
