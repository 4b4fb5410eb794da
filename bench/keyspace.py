"""Bench row 6: the keyspace at scale. Redis's memory per key and per account, and authz's
check rate over 1,000,000 keys against its rate over 1,000.

Keys are issued the product's way (``KeyStore.write_many``: owner sets, indexes, directory
entries, records and account hashes, as ``tollway keys create`` writes them), on the bench's
"bench" tier, into the bench's redis-server, in three steps whose memory is read from
``INFO memory`` between them:

1. 1,000 keys over 100 accounts; authz's check rate over them (wrk, every request the next
   key);
2. one key for each further account, up to ``accounts``: an account and a key each;
3. the other keys, spread over the accounts: a key each. Memory per key is step 3's growth
   per key; per account, step 2's growth per account less one key's.

Then the check rate over two samples of the million: 10,000 keys (a working set authz's
caches hold: what the keyspace's size costs Redis and authz, the caches warm), and 200,000
(past what authz remembers by default, TOLLWAY_AUTHZ_KEY_CACHE = 100,000: cycled in order, each
key is forgotten before it comes again, so every check hashes its key and looks its account
up first, one more round trip: the worst case, as if every key were new). Then the 200,000
again with authz told to remember them all, after a warm-up that visits each. Memory is at
rest, before checks add each account's bucket and quota fields.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.records import KeyRecord
from tollway.redis_client import connect

BATCH = 5_000  # keys per write_many
WARM = 10_000  # keys of the million a warm run cycles over (authz's caches hold them)
BEYOND = 200_000  # keys a run cycles over past authz's default caches (100,000 keys)
BEYOND_WARM_S = 15  # a warm-up that visits every one of them (at ~15,000 checks/s or more)


async def issue(store: KeyStore, accounts: range, keys: int, tier: str, created: int) -> list[str]:
    """``keys`` new keys on ``tier``, round-robin over the customer accounts ``accounts``
    (``cus_ks_<n>``); their plaintexts."""
    plaintexts: list[str] = []
    for start in range(0, keys, BATCH):
        records = []
        for i in range(start, min(keys, start + BATCH)):
            customer = f"cus_ks_{accounts[i % len(accounts)]}"
            plaintext, record = store.new_record(KeyRecord.template(tier, customer, created))
            records.append(record)
            plaintexts.append(plaintext)
        outcomes = await store.write_many(records)
        assert all(o is True for o in outcomes), [o for o in outcomes if o is not True][:3]
    return plaintexts


async def used_memory(redis: Any) -> int:
    return int((await redis.info("memory"))["used_memory"])


def keyspace(
    redis_url: str,
    tier: str,
    out: Path,
    rate_over: Callable[[Path, int], dict[str, float]],
    keys: int = 1_000_000,
    accounts: int = 100_000,
    size_caches: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The steps above; ``rate_over(keys_file, warm_s)`` measures authz cycling over the keys
    in that file after ``warm_s`` seconds of the same (its checks/s as "rps", and whatever else
    it reports); ``size_caches(n)``, if given, restarts authz remembering ``n`` keys, for a
    last run over the sample past the default caches. Returns bytes per key and per account,
    and the measurements ("1k", "warm", "beyond", "beyond_sized")."""

    async def load(accounts_range: range, n: int) -> tuple[list[str], int]:
        redis = connect(redis_url, timeout_s=60)
        store = KeyStore(redis, KeyHasher())
        before = await used_memory(redis)
        plaintexts = await issue(store, accounts_range, n, tier, 1_700_000_000)
        grown = await used_memory(redis) - before
        await redis.aclose()
        return plaintexts, grown

    small, _ = asyncio.run(load(range(100), 1_000))
    (out / "keys_1k.txt").write_text("\n".join(small) + "\n")
    rate_1k = rate_over(out / "keys_1k.txt", 2)
    more_accounts, grown_accounts = asyncio.run(load(range(100, accounts), accounts - 100))
    rest = keys - len(small) - len(more_accounts)
    more_keys, grown_keys = asyncio.run(load(range(accounts), rest))
    per_key = grown_keys / rest
    per_account = grown_accounts / len(more_accounts) - per_key
    every = small + more_accounts + more_keys
    rates = {"1k": rate_1k}
    for name, size in (("warm", WARM), ("beyond", BEYOND)):
        sample = random.sample(every, min(size, len(every)))
        (out / f"keys_{name}.txt").write_text("\n".join(sample) + "\n")
        rates[name] = rate_over(out / f"keys_{name}.txt", 2)
    if size_caches is not None:  # the same sample, authz remembering all of it
        size_caches(BEYOND + BEYOND // 10)
        rates["beyond_sized"] = rate_over(out / "keys_beyond.txt", BEYOND_WARM_S)
    return {
        "keys": len(every),
        "per_key": per_key,
        "per_account": per_account,
        "rates": rates,
    }
