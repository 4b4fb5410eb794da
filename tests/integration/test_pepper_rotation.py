"""Rotating the key pepper (TOLLWAY_KEY_PEPPER: the one in force, then earlier ones), against a
real Redis and check.lua: a key issued under an earlier pepper is found, moved to the new one
and keeps its id; processes given the new list, the old one, or only the new pepper all let it
in, for the rollout's whole length; a key under no pepper listed stays out."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from authz.engine import CheckEngine, Verdict
from authz.settings import CheckSettings
from tests.integration.conftest import running_api
from tollway import schema
from tollway.audit import AuditLog
from tollway.clock import WallClock
from tollway.key_store import KeyNotFound, KeyStore
from tollway.keys import KeyHasher, generate_key, pepper_fingerprint
from tollway.lifecycle import Lifecycle
from tollway.settings import SettingsError
from webhook.checkout import Checkouts, ClaimGone
from webhook.subscriptions import SubState

pytestmark = pytest.mark.integration

P0, P1, P2 = "pepper-zero-0123456789abcdef", "pepper-one-0123456789abcdef", "pepper-two-0123456789"


def store(redis: Any, setting: str) -> KeyStore:
    """A KeyStore as a process with TOLLWAY_KEY_PEPPER=``setting`` has it."""
    return KeyStore(redis, KeyHasher.configured(CheckSettings(key_pepper=setting)), AuditLog(redis))


async def issue(redis: Any, setting: str) -> tuple[str, str]:
    """A new key on the free tier, issued by a process with ``setting``: (key, key id)."""
    plaintext, record = await Lifecycle(store(redis, setting), WallClock()).create("free", "cus_1")
    return plaintext, record.key_id


@asynccontextmanager
async def engine(redis_server: str, setting: str, tmp_path: Path):
    """authz's check engine with TOLLWAY_KEY_PEPPER=``setting``."""
    settings = CheckSettings(redis_url=redis_server, key_pepper=setting, spool_dir=tmp_path)
    e = CheckEngine(settings, f"pepper-{abs(hash(setting))}", stamps=False,
                    registry=CollectorRegistry())  # fmt: skip
    await e.start()
    try:
        yield e
    finally:
        await e.stop()


async def verdicts(redis_server: str, key: str, tmp_path: Path, *settings: str) -> list[Verdict]:
    """The verdict of a fresh authz process with each of ``settings`` for ``key``."""
    out = []
    for setting in settings:
        async with engine(redis_server, setting, tmp_path) as e:
            out.append(await e.verify(key))
    return out


async def test_a_key_under_the_earlier_pepper_is_moved_and_keeps_its_id(redis):
    key, key_id = await issue(redis, P0)
    rotating = store(redis, f"{P1},{P0}")
    record = await rotating.get(key)
    assert record.key_id == key_id
    assert record.hash == rotating.hasher.digest(key)  # moved to the pepper in force
    assert record.hash_prev == KeyHasher(P0.encode()).digest(key)
    assert record.pepper == pepper_fingerprint(P1.encode()) != pepper_fingerprint(P0.encode())
    new_id = rotating.hasher.key_id(rotating.hasher.digest(key))
    assert await redis.hget(schema.key_directory(new_id), "key_id") == key_id
    entries = await rotating.audit.entries()
    assert [(e.action, e.target) for e in entries if e.actor == "pepper"] == [
        ("moved", f"key:{key_id}")
    ]
    # Found again without moving again; by the old list, and by the new pepper alone.
    assert (await rotating.get(key)).key_id == key_id
    assert (await store(redis, P0).get(key)).key_id == key_id
    assert (await store(redis, P1).get(key)).key_id == key_id
    assert len([e for e in await rotating.audit.entries() if e.actor == "pepper"]) == 1
    # A pepper never listed finds nothing; nor does a listed one for a key never issued.
    with pytest.raises(KeyNotFound):
        await store(redis, P2).get(key)
    other, _ = await issue(redis, P2)
    with pytest.raises(KeyNotFound):
        await rotating.get(other)


async def test_keys_issued_before_any_pepper_move_to_the_first(redis):
    key, key_id = await issue(redis, "")
    record = await store(redis, f"{P1},unpeppered").get(key)
    assert (record.key_id, record.pepper) == (key_id, pepper_fingerprint(P1.encode()))
    assert (await store(redis, P1).get(key)).key_id == key_id


async def test_authz_lets_the_key_in_under_every_list_of_the_rollout(redis, redis_server, tmp_path):
    """Before, during and after the rollout: authz with the old pepper, with the new list
    (which moves the key), with the old pepper again (a process not yet restarted), with the
    new pepper alone; always as the key's own id. A pepper never listed: 401."""
    key, key_id = await issue(redis, P0)
    before, moving, old, after, stranger = await verdicts(
        redis_server, key, tmp_path, P0, f"{P1},{P0}", P0, P1, P2
    )
    for v in (before, moving, old, after):
        assert (v.valid, v.code, v.key_id, v.account) == (True, "ok", key_id, "cus_1")
    assert (stranger.valid, stranger.code) == (False, "invalid_api_key")
    assert (await store(redis, P1).get(key)).hash_prev  # it was moved
    # Every request was counted on the key's own id.
    share = await redis.hget(schema.account_state("cus_1"), f"n:{key_id}")
    assert int(share) == 4


async def test_a_revoked_key_stays_out_under_the_new_pepper(redis, redis_server, tmp_path):
    key, _ = await issue(redis, P0)
    async with engine(redis_server, f"{P1},{P0}", tmp_path) as e:
        assert (await e.verify(key)).valid
        await Lifecycle(store(redis, f"{P1},{P0}"), WallClock()).revoke(key)
        assert (await e.verify(key)).code == "key_revoked"
    (after,) = await verdicts(redis_server, key, tmp_path, P1)
    assert after.code == "key_revoked"


async def test_a_key_moved_by_a_newer_list_is_not_moved_back(redis, redis_server, tmp_path):
    """Two rotations overlap: a process given P2 moved the key; one still on "P1,P0" finds it
    by the digest it was found under and leaves the record as it is."""
    key, key_id = await issue(redis, P0)
    newest = store(redis, f"{P2},{P1},{P0}")
    moved = await newest.get(key)
    older = await store(redis, f"{P1},{P0}").get(key)
    assert older.key_id == key_id and older.hash == moved.hash == newest.hasher.digest(key)
    (v,) = await verdicts(redis_server, key, tmp_path, f"{P1},{P0}")
    assert (v.valid, v.key_id) == (True, key_id)
    assert (await newest.get(key)).hash == moved.hash


async def test_a_forged_key_is_refused_and_remembered(redis, redis_server, tmp_path):
    """A well-formed key no pepper knows is refused; its digest is remembered, so that asking
    again costs no look under the earlier peppers."""
    forged = generate_key()
    async with engine(redis_server, f"{P1},{P0}", tmp_path) as e:
        assert (await e.verify(forged)).code == "invalid_api_key"
        assert e.service.hasher.digest(forged) in e.service.unknown_keys
        assert (await e.verify(forged)).code == "invalid_api_key"


async def test_operator_tokens_made_before_work_while_their_pepper_is_listed(
    redis, redis_server, tmp_path
):
    """The management API with "P1,P0": a token made under P0 is let in (read under its own
    id, which it keeps); its verify finds a key issued under P0, by the key's own id. With P1
    alone, the token is refused."""
    async with running_api(redis, redis_server, tmp_path, P0) as api:
        token = await api.token()
    key, key_id = await issue(redis, P0)
    async with running_api(redis, redis_server, tmp_path, f"{P1},{P0}") as api:
        for listener in ("api", "verify"):
            status, v = await api.verify(listener, token, json={"key": key})
            assert (status, v["valid"], v["key_id"]) == (200, True, key_id)
        status, listed = await api.call("GET", f"/v1/keys/{key_id}", token)
        assert (status, listed["id"]) == (200, key_id)
    async with running_api(redis, redis_server, tmp_path, P1) as api:
        status, _ = await api.call("GET", f"/v1/keys/{key_id}", token)
        assert status == 401


async def test_a_kept_idempotent_answer_opens_while_its_pepper_is_listed(
    redis, redis_server, tmp_path
):
    """The management API keeps an Idempotency-Key's answer sealed under the pepper in force:
    replayed while that pepper is listed; once it is dropped (the token, made under an older
    one still listed, still works), 409 idempotency_unreadable rather than a second key."""
    async with running_api(redis, redis_server, tmp_path, P0) as api:
        token = await api.token()
    body, headers = {"tier": "free", "customer": "cus_idem"}, {"Idempotency-Key": "k1"}
    async with running_api(redis, redis_server, tmp_path, f"{P1},{P0}") as api:
        status, first = await api.call("POST", "/v1/keys", token, json=body, headers=headers)
        assert status == 200
    async with running_api(redis, redis_server, tmp_path, f"{P2},{P1},{P0}") as api:
        status, again = await api.call("POST", "/v1/keys", token, json=body, headers=headers)
        assert (status, again) == (200, first)
    async with running_api(redis, redis_server, tmp_path, f"{P2},{P0}") as api:
        status, err = await api.call("POST", "/v1/keys", token, json=body, headers=headers)
        assert (status, err["error"]["code"]) == (409, "idempotency_unreadable")
        status, listed = await api.call("GET", "/v1/keys?customer=cus_idem", token)
        assert len(listed["data"]) == 1  # nothing was made twice


async def test_a_checkout_key_issued_before_the_rotation_is_still_claimed(redis):
    """The key a Checkout issued, sealed under the old pepper, is handed out once after the
    new one is put first; with its pepper dropped, the claim says it cannot be read."""
    issued = Checkouts(redis, store(redis, P0), 900)
    key_id = await issued.issue("cs_rot", "cus_rot", "sub_rot", "free", "paid", SubState("sub_rot"))
    await issued.issue("cs_gone", "cus_gone", "sub_gone", "free", "paid", SubState("sub_gone"))
    claimed = await Checkouts(redis, store(redis, f"{P1},{P0}"), 900).claim("cs_rot")
    assert claimed is not None and claimed.key_id == key_id
    assert (await store(redis, f"{P1},{P0}").get(claimed.api_key)).key_id == key_id
    with pytest.raises(ClaimGone, match="claim_unreadable"):
        await Checkouts(redis, store(redis, P1), 900).claim("cs_gone")


def test_the_pepper_list_is_checked_at_start():
    with pytest.raises(SettingsError, match="only follow"):
        CheckSettings(key_pepper=f"unpeppered,{P0}")
    with pytest.raises(SettingsError, match="twice"):
        CheckSettings(key_pepper=f"{P0},{P1},{P0}")
    assert CheckSettings(key_pepper=f" {P1} , {P0},unpeppered").key_peppers == (
        P1.encode(),
        P0.encode(),
        b"",
    )
