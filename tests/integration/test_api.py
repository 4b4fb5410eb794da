"""The management API against a real Redis: tokens and scopes, the key and account operations
through the one lifecycle, idempotency, pagination, bad input, and the audit log."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.conftest import Api
from tests.support import redis_dump
from tollway import schema
from tollway.clock import WallClock
from tollway.key_store import KeyStore
from tollway.lifecycle import Lifecycle

pytestmark = pytest.mark.integration


async def test_a_key_is_created_read_updated_rotated_suspended_and_revoked(api):
    t = await api.token()
    status, made = await api.call(
        "POST",
        "/v1/keys",
        t,
        json={"tier": "pro", "customer": "cus_api1", "name": "main", "external_id": "user-42",
              "metadata": {"team": "a"}},
    )  # fmt: skip
    assert status == 200, made
    key_id = made["id"]
    assert made["key"].startswith("tw_live_") and made["state"] == "active"
    assert made["external_id"] == "user-42" and made["metadata"] == {"team": "a"}
    assert made["key"] not in await redis_dump(api.redis)
    status, got = await api.call("GET", f"/v1/keys/{key_id}", t)
    assert status == 200 and "key" not in got and got["name"] == "main"
    later = int(time.time()) + 3600
    status, got = await api.call(
        "PATCH", f"/v1/keys/{key_id}", t, json={"name": "renamed", "expires_at": later}
    )
    assert status == 200 and got["name"] == "renamed" and got["expires_at"] == later
    assert got["metadata"] == {"team": "a"}  # left out: left as it was
    status, got = await api.call("POST", f"/v1/keys/{key_id}/suspend", t)
    assert status == 200 and got["state"] == "suspended"
    status, got = await api.call("POST", f"/v1/keys/{key_id}/resume", t)
    assert status == 200 and got["state"] == "active"
    status, new = await api.call("POST", f"/v1/keys/{key_id}/rotate", t, json={"overlap_s": 0})
    assert status == 200 and new["key"] != made["key"] and new["external_id"] == "user-42"
    status, old = await api.call("GET", f"/v1/keys/{key_id}", t)
    assert old["state"] == "revoked" and old["successor"] == new["id"]
    # A final key changes no more: 409 conflict, nothing written.
    before = await state(api.redis)
    for action in ("suspend", "resume", "rotate"):
        status, err = await api.call("POST", f"/v1/keys/{key_id}/{action}", t)
        assert status == 409 and err["error"]["code"] == "conflict", (action, err)
    status, err = await api.call("PATCH", f"/v1/keys/{key_id}", t, json={"name": "x"})
    assert status == 409
    assert await state(api.redis) == before
    status, listed = await api.call("GET", "/v1/keys?external_id=user-42", t)
    # (Oldest first, and by id within one second.)
    assert status == 200 and {k["id"] for k in listed["data"]} == {key_id, new["id"]}
    status, audit = await api.call("GET", f"/v1/audit?target=key:{key_id}", t)
    actions = [e["action"] for e in audit["data"]]
    assert actions == ["rotated", "resumed", "suspended", "updated", "created"]
    assert {e["actor"] for e in audit["data"]} == {f"token:{_token_id(api, t)}"}


async def state(redis) -> dict[str, str]:
    """Every key and its value, but the rate counters: what a refused request must not touch."""
    out = {}
    async for name in redis.scan_iter("*"):
        if ":throttle:" in name:
            continue
        kind = await redis.type(name)
        if kind == "hash":
            value: object = sorted((await redis.hgetall(name)).items())
        elif kind == "set":
            value = sorted(await redis.smembers(name))
        elif kind == "zset":
            value = await redis.zrange(name, 0, -1)
        elif kind == "stream":
            value = await redis.xlen(name)
        else:
            value = await redis.get(name)
        out[name] = repr(value)
    return out


def _token_id(api: Api, plaintext: str) -> str:
    hasher = api.tokens.hasher
    return hasher.key_id(hasher.digest(plaintext))


async def test_accounts_are_held_limited_and_moved_through_the_api(api):
    t = await api.token()
    status, made = await api.call("POST", "/v1/keys", t, json={"tier": "free", "customer": "cus_a"})
    assert status == 200
    status, acct = await api.call("GET", "/v1/accounts/cus_a", t)
    assert status == 200 and acct["tier"] == "free" and not acct["held"]
    status, acct = await api.call("POST", "/v1/accounts/cus_a/suspend", t)
    assert status == 200 and acct["held"]
    status, key = await api.call("GET", f"/v1/keys/{made['id']}", t)
    assert key["state"] == "suspended"
    status, err = await api.call("POST", "/v1/keys", t, json={"tier": "free", "customer": "cus_a"})
    assert status == 409 and err["error"]["code"] == "conflict"  # a held account takes none
    status, acct = await api.call("POST", "/v1/accounts/cus_a/resume", t)
    assert status == 200 and not acct["held"]
    status, acct = await api.call("PATCH", "/v1/accounts/cus_a", t, json={"tier": "pro"})
    assert status == 200 and acct["tier"] == "pro"
    status, acct = await api.call(
        "POST", "/v1/accounts/cus_a/limits", t, json={"burst": 7, "monthly_quota": 100}
    )
    assert status == 200 and acct["overrides"] == {"burst": "7", "monthly_quota": "100"}
    status, acct = await api.call("DELETE", "/v1/accounts/cus_a/limits", t)
    assert status == 200 and acct["overrides"] == {}
    status, listed = await api.call("GET", "/v1/accounts", t)
    assert status == 200 and [a["id"] for a in listed["data"]] == ["cus_a"]
    status, usage = await api.call("GET", "/v1/usage?customer=cus_a", t)
    assert status == 200 and [k["key_id"] for k in usage["keys"]] == [made["id"]]


async def test_tokens_missing_malformed_revoked_or_under_scoped_change_nothing(api):
    reader = await api.token({"keys:read"})
    revoked = await api.token()
    await api.tokens.revoke(_token_id(api, revoked))
    before = await state(api.redis)
    body = {"tier": "free", "customer": "cus_t"}
    for token, expected in (("", 401), ("twa_short", 401), (revoked, 401), (reader, 403)):
        status, err = await api.call("POST", "/v1/keys", token, json=body)
        assert status == expected, (token[:8], err)
        assert err["error"]["code"] == {401: "unauthorized", 403: "forbidden"}[expected]
    async with api.client.post("/v1/keys", json=body) as r:  # no Authorization at all
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert await state(api.redis) == before


@pytest.mark.parametrize(
    "body, field",
    [
        ({"tier": "nope", "customer": "cus_b"}, "tier"),
        ({"tier": "free", "customer": "cus b"}, "customer"),
        ({"tier": "free", "customer": "cus_b", "colour": "red"}, "colour"),
        ({"tier": 5, "customer": "cus_b"}, "tier"),
        ({"tier": "free", "metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
        ({"tier": "free", "metadata": {"k": "v" * 501}}, "metadata.k"),
        ({"tier": "free", "expires_at": 1000}, "expires_at"),
        ({"tier": "free", "external_id": "has space"}, "external_id"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(api, body, field):
    t = await api.token()
    before = await state(api.redis)
    status, err = await api.call("POST", "/v1/keys", t, json=body)
    assert status == 400 and err["error"]["code"] == "invalid_request"
    assert err["error"]["field"] == field, err
    assert await state(api.redis) == before


async def test_malformed_bodies_paths_and_queries_get_clear_errors(api):
    t = await api.token()
    cases = [
        ("POST", "/v1/keys", {"data": b"{not json"}, 400),
        ("POST", "/v1/keys", {"data": b"[1, 2]"}, 400),
        ("POST", "/v1/keys", {"data": b"\xff\xfe"}, 400),
        ("POST", "/v1/keys", {"data": b"[" * 60_000}, 400),  # nested past any parser's depth
        ("POST", "/v1/keys", {"data": b'{"tier": "free", "tier": 5}'}, 400),
        ("GET", "/v1/keys/NOT-AN-ID", {}, 404),
        ("GET", "/v1/keys/0123456789abcdef", {}, 404),
        ("GET", "/v1/keys?limit=1000", {}, 400),
        ("GET", "/v1/keys?colour=red", {}, 400),
        ("GET", "/v1/nothing", {}, 404),
        ("PUT", "/v1/keys", {}, 405),
        ("POST", "/v1/keys", {"data": b"{" + b" " * 70_000 + b"}"}, 413),
    ]
    for method, path, kw, expected in cases:
        async with api.client.request(
            method, path, headers={"Authorization": f"Bearer {t}"}, **kw
        ) as r:
            assert r.status == expected, (method, path, await r.text())
            assert (await r.json())["error"]["code"]


async def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(api):
    t = await api.token()
    body = {"tier": "free", "customer": "cus_i"}
    headers = {"Idempotency-Key": "create-1"}
    status, first = await api.call("POST", "/v1/keys", t, json=body, headers=headers)
    assert status == 200
    assert first["key"] not in await redis_dump(api.redis)  # the kept answer is sealed
    status, again = await api.call("POST", "/v1/keys", t, json=body, headers=headers)
    assert status == 200 and again == first  # the same key, shown again: nothing new made
    status, listed = await api.call("GET", "/v1/keys?customer=cus_i", t)
    assert len(listed["data"]) == 1
    status, err = await api.call(
        "POST", "/v1/keys", t, json={**body, "name": "other"}, headers=headers
    )
    assert status == 409 and err["error"]["code"] == "idempotency_mismatch"
    # Another token's same key is its own.
    status, theirs = await api.call("POST", "/v1/keys", await api.token(), json=body,
                                    headers=headers)  # fmt: skip
    assert status == 200 and theirs["id"] != first["id"]


async def test_concurrent_posts_with_one_idempotency_key_create_one_key(api):
    t = await api.token()
    body = {"tier": "free", "customer": "cus_c"}
    headers = {"Idempotency-Key": "same"}
    answers = await asyncio.gather(
        *(api.call("POST", "/v1/keys", t, json=body, headers=headers) for _ in range(8))
    )
    made = {a["id"] for s, a in answers if s == 200}
    assert len(made) == 1
    assert all(s in (200, 409) for s, _ in answers)
    status, listed = await api.call("GET", "/v1/keys?customer=cus_c", t)
    assert status == 200 and [k["id"] for k in listed["data"]] == list(made)


async def test_pagination_over_2000_keys_returns_each_once(api):
    lifecycle = Lifecycle(KeyStore(api.redis, api.tokens.hasher), WallClock())
    made: set[str] = set()
    for _ in range(80):  # 25 at a time: within the client's connection pool
        batch = await asyncio.gather(*(lifecycle.create("free", "cus_p") for _ in range(25)))
        made |= {record.key_id for _, record in batch}
    t = await api.token({"keys:read"})
    for query in ("customer=cus_p&", ""):
        seen = [k["id"] for k in await every_page(api, t, f"/v1/keys?{query}limit=100")]
        assert len(seen) == len(set(seen)) == 2000 and set(seen) == made


async def every_page(api: Api, token: str, path: str) -> list[dict]:
    """Every item of a list, page after page by cursor."""
    items: list[dict] = []
    after = ""
    while True:
        status, page = await api.call("GET", f"{path}{after}", token)
        assert status == 200, page
        items += page["data"]
        if not page["has_more"]:
            return items
        after = f"&starting_after={page['data'][-1]['id']}"


async def test_the_token_rate_is_bounded(api):
    """50 requests per second per token in this test's settings: 300 at once cannot all pass
    unless they spread over six seconds."""
    t = await api.token({"keys:read"})
    answers = await asyncio.gather(*(api.call("GET", "/v1/keys", t) for _ in range(300)))
    limited = [a for s, a in answers if s == 429]
    assert limited and limited[0]["error"]["code"] == "rate_limited"
    assert sum(1 for s, _ in answers if s == 200) >= 50


async def test_reindex_puts_older_keys_in_the_lists(api, redis):
    """Keys written before the indexes existed (here: the indexes deleted) join them."""
    t = await api.token()
    status, made = await api.call("POST", "/v1/keys", t, json={"tier": "free", "customer": "cus_r"})
    assert status == 200
    for name in [n async for n in redis.scan_iter("tw:idx:*")]:
        await redis.delete(name)
    status, listed = await api.call("GET", "/v1/keys?customer=cus_r", t)
    assert listed["data"] == []
    assert await KeyStore(redis, api.tokens.hasher).reindex() == 1
    status, listed = await api.call("GET", "/v1/keys?customer=cus_r", t)
    assert [k["id"] for k in listed["data"]] == [made["id"]]
    status, accounts = await api.call("GET", "/v1/accounts", t)
    assert [a["id"] for a in accounts["data"]] == ["cus_r"]


async def test_the_audit_log_pages_by_cursor_newest_first(api):
    t = await api.token()
    status, made = await api.call("POST", "/v1/keys", t, json={"tier": "free", "customer": "cus_l"})
    for action in ("suspend", "resume", "suspend", "resume"):
        assert (await api.call("POST", f"/v1/keys/{made['id']}/{action}", t))[0] == 200
    entries = await every_page(api, t, f"/v1/audit?target=key:{made['id']}&limit=2")
    assert [e["action"] for e in entries] == [
        "resumed",
        "suspended",
        "resumed",
        "suspended",
        "created",
    ]
    for bad in ("0-0", "000-0"):
        status, page = await api.call("GET", f"/v1/audit?starting_after={bad}", t)
        assert status == 200 and page["data"] == []
    status, err = await api.call("GET", "/v1/audit?starting_after=1-99999999999999999999", t)
    assert status == 400 and err["error"]["field"] == "starting_after"


async def test_a_subscription_key_is_created_with_its_details_at_once(api):
    """Name, external id, metadata and expiry are written with the key (one record write),
    for a subscription's key as for a customer's: its external id is indexed and goes to
    authz's directory entry, so it reaches the upstream."""
    keys = KeyStore(api.redis, api.tokens.hasher)
    await keys.sync_account("sub_api", "cus_api_s", 1, {"tier": "pro", "status": "active"})
    t = await api.token({"keys:write", "keys:read"})
    later = int(time.time()) + 3600
    body = {"subscription": "sub_api", "name": "n", "external_id": "u-9",
            "metadata": {"a": "b"}, "expires_at": later}  # fmt: skip
    status, made = await api.call("POST", "/v1/keys", t, json=body)
    assert status == 200, made
    assert (made["account"], made["tier"], made["external_id"]) == ("sub_api", "pro", "u-9")
    assert (made["name"], made["metadata"], made["expires_at"]) == ("n", {"a": "b"}, later)
    status, listed = await api.call("GET", "/v1/keys?external_id=u-9", t)
    assert [k["id"] for k in listed["data"]] == [made["id"]]
    assert await api.redis.hget(schema.key_directory(made["id"]), "external_id") == "u-9"


async def test_usage_of_one_account_this_period_and_the_last(api):
    """``?account=``: that account's keys, and its billing period and the one before, each
    with the units of the windows that began in it (the customer's ledger included); exactly
    one of customer and account is a 400 naming the field, an unknown account a 404."""
    t = await api.token()
    _, made = await api.call("POST", "/v1/keys", t, json={"tier": "pro", "customer": "cus_up"})
    _, v = await api.call("POST", "/v1/keys/verify", t, json={"key": made["key"]})
    assert v["valid"]
    status, u = await api.call("GET", "/v1/usage?account=cus_up", t)
    assert status == 200 and (u["customer"], u["account"]) == ("cus_up", "cus_up")
    (this, last) = [p for p in u["periods"] if p["meter"] == "api_requests"]
    assert (this["period"], this["units"], last["period"], last["units"]) == ("this", 1, "last", 0)
    assert last["end"] == this["start"] and this["start"] <= time.time() < this["end"]
    # A window of the last period, already sent to Stripe, counts there.
    await api.redis.hset(schema.ledger("cus_up", "sent"), f"api_requests|{last['start'] + 60}", 7)
    _, u = await api.call("GET", "/v1/usage?customer=cus_up", t)
    assert u["account"] is None
    units = {p["period"]: p["units"] for p in u["periods"] if p["meter"] == "api_requests"}
    assert units == {"this": 1, "last": 7}
    assert [k["key_id"] for k in u["keys"]] == [made["id"]]
    for query in ("", "?customer=cus_up&account=cus_up"):
        status, err = await api.call("GET", f"/v1/usage{query}", t)
        assert status == 400 and err["error"]["field"] == "customer", query
    status, err = await api.call("GET", "/v1/usage?account=acct_nobody", t)
    assert status == 404 and err["error"]["code"] == "not_found"


async def test_credits_are_read_granted_and_adjusted_once_per_idempotency_key(api):
    """A prepaid account's balance and ledger; a move needs a reason, is audited as the
    token, and a retried one (same Idempotency-Key) moves nothing twice."""
    t = await api.token()
    await api.call("POST", "/v1/keys", t, json={"tier": "free", "customer": "cus_c"})
    move = {"credits": 300, "reason": "welcome", "kind": "grant"}
    once = {"Idempotency-Key": "grant-1"}
    status, got = await api.call("POST", "/v1/accounts/cus_c/credits", t, json=move, headers=once)
    assert status == 200 and (got["balance"], got["ledger_sum"]) == (300, 300)
    status, again = await api.call("POST", "/v1/accounts/cus_c/credits", t, json=move, headers=once)
    assert status == 200 and again["balance"] == 300
    status, got = await api.call("POST", "/v1/accounts/cus_c/credits", t,
                                 json={"credits": -50, "reason": "correction"})  # fmt: skip
    assert status == 200 and got["balance"] == 250
    assert [(e["kind"], e["credits"]) for e in got["ledger"]] == [
        ("adjustment", -50), ("grant", 300)
    ]  # fmt: skip
    status, shown = await api.call("GET", "/v1/accounts/cus_c/credits", t)
    assert status == 200 and shown == got
    status, err = await api.call("POST", "/v1/accounts/cus_c/credits", t,
                                 json={"credits": -5, "reason": "x", "kind": "grant"})  # fmt: skip
    assert (status, err["error"]["field"]) == (400, "credits")
    status, err = await api.call("POST", "/v1/accounts/cus_c/credits", t, json={"credits": 5})
    assert status == 400 and err["error"]["field"] == "reason"
    status, err = await api.call("POST", "/v1/accounts/cus_none/credits", t,
                                 json={"credits": 5, "reason": "x"})  # fmt: skip
    assert status == 404
    status, audit = await api.call("GET", "/v1/audit?target=account:cus_c", t)
    moves = [e for e in audit["data"] if e["action"].startswith("credits_")]
    assert [e["action"] for e in moves] == ["credits_adjustment", "credits_grant"]
    assert all(e["actor"].startswith("token:") for e in moves)
