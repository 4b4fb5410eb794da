"""The management API's gate (api/gate.py) on a fake store: exact admission for every
operation but verify; hot admission for verify, with what it promises: a token read within
TOKEN_CACHE_S is taken as read, the counts of one loop tick go to Redis in one pipeline, the
rate holds in one process by itself and across processes from Redis's count, a revoked token
is refused once its reading is TOKEN_CACHE_S old."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.errors import ApiError
from api.gate import OVER_S, TOKEN_CACHE_S, Gate
from tollway import schema
from tollway.api_tokens import ApiTokens
from tollway.keys import KeyHasher

HASHER = KeyHasher(b"gate-test-pepper")
TOKEN = "twa_" + "a" * 43
DIGEST = HASHER.digest(TOKEN)
TOKEN_ID = HASHER.key_id(DIGEST)


class FakeEngine:
    """The engine's ``commands`` over dicts: HGETALL and count_in_window.lua, with every
    pipeline it was sent kept."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, str]] = {
            schema.api_token(TOKEN_ID): {"digest": DIGEST, "name": "t", "scopes": "verify"}
        }
        self.counts: dict[str, int] = {}
        self.pipelines: list[list[tuple[Any, ...]]] = []

    async def commands(self, *commands: tuple[Any, ...]) -> list[Any]:
        self.pipelines.append(list(commands))
        replies: list[Any] = []
        for c in commands:
            if c[0] == "HGETALL":
                replies.append([x for kv in self.records.get(c[1], {}).items() for x in kv])
            else:  # EVALSHA count_in_window: sha, 1, key, window[, by]
                key, by = c[3], int(c[5]) if len(c) > 5 else 1
                self.counts[key] = self.counts.get(key, 0) + by
                replies.append(self.counts[key])
        return replies


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gate(per_token: int = 1000) -> tuple[Gate, FakeEngine, Clock]:
    engine, clock = FakeEngine(), Clock()
    tokens = ApiTokens(None, HASHER, None)  # lookup needs only the hasher
    return Gate(engine, tokens, per_token, clock), engine, clock  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_exact_admission_reads_the_record_and_counts_every_time():
    """Every operation but verify: the record and the count, one round trip per call."""
    g, engine, _ = gate()
    for _ in range(3):
        assert (await g.admit(f"Bearer {TOKEN}")).id == TOKEN_ID
    assert len(engine.pipelines) == 3 and all(len(p) == 2 for p in engine.pipelines)


async def test_hot_admission_reads_once_then_counts_a_tick_in_one_pipeline():
    """The first verify is admitted exactly; the next ones within TOKEN_CACHE_S read no
    record, and their counts reach Redis summed, in one pipeline for the tick."""
    g, engine, _ = gate()
    await g.admit(f"Bearer {TOKEN}", hot=True)
    for _ in range(5):
        await g.admit(f"Bearer {TOKEN}", hot=True)
    await settle()
    assert len(engine.pipelines) == 2
    (count,) = engine.pipelines[1]
    assert count[-1] == "5"  # five hot admissions, one command
    assert sum(engine.counts.values()) == 6


async def test_a_revoked_token_is_refused_once_its_reading_is_old():
    g, engine, clock = gate()
    await g.admit(f"Bearer {TOKEN}", hot=True)
    engine.records[schema.api_token(TOKEN_ID)]["revoked"] = "1"
    clock.now += TOKEN_CACHE_S - 0.01
    await g.admit(f"Bearer {TOKEN}", hot=True)  # read under a second ago: still taken
    clock.now += 0.02
    with pytest.raises(ApiError) as refused:
        await g.admit(f"Bearer {TOKEN}", hot=True)
    assert refused.value.status == 401
    with pytest.raises(ApiError):  # exact admission never took it after the revocation
        await g.admit(f"Bearer {TOKEN}")


async def test_one_process_holds_the_rate_by_itself():
    """A burst within one tick (no reply from Redis yet): no more than the rate passes."""
    g, engine, clock = gate(per_token=5)
    passed = 0
    for _ in range(20):
        try:
            await g.admit(f"Bearer {TOKEN}", hot=True)
            passed += 1
        except ApiError as exc:
            assert exc.status == 429
    assert passed == 5
    await settle()  # Redis counted 5: not past the rate
    clock.now += 1.0  # the next second
    engine.counts.clear()  # Redis's window ended too
    await g.admit(f"Bearer {TOKEN}", hot=True)


async def test_redis_count_past_the_rate_stops_the_token_for_the_second():
    """Other processes spent the token's rate: once a reply says so, refused for OVER_S."""
    g, engine, clock = gate(per_token=10)
    await g.admit(f"Bearer {TOKEN}", hot=True)
    key = next(iter(engine.counts))
    engine.counts[key] = 50  # what the other processes counted
    await g.admit(f"Bearer {TOKEN}", hot=True)  # passes: the reply has not come
    await settle()
    with pytest.raises(ApiError) as refused:
        await g.admit(f"Bearer {TOKEN}", hot=True)
    assert refused.value.status == 429
    clock.now += OVER_S
    engine.counts[key] = 0  # Redis's window ended too
    await g.admit(f"Bearer {TOKEN}", hot=True)


async def test_a_forged_token_is_never_remembered():
    """A token without a live record is refused every time, each time read from Redis."""
    g, engine, _ = gate()
    forged = "twa_" + "b" * 43
    for _ in range(3):
        with pytest.raises(ApiError) as refused:
            await g.admit(f"Bearer {forged}", hot=True)
        assert refused.value.status == 401
    assert len(engine.pipelines) == 3 and g._known == {}
