"""The management API's verify against a real Redis, on both its listeners: the API's port
(aiohttp) and verify's own (the lean HTTP front, api/verify_front.py)."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from api.gate import TOKEN_CACHE_S

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("listener", ["api", "verify"])
async def test_verify_answers_as_envoy_would_and_counts_the_same(api, listener):
    """On the API's port and on verify's own: Envoy's decision and reason codes, counted as a
    request through Envoy is; bad input is a 400 naming the field, a token without the scope
    a 403."""
    t = await api.token({"keys:write", "verify", "accounts:read"})
    status, made = await api.call(
        "POST", "/v1/keys", t, json={"tier": "free", "customer": "cus_v", "external_id": "u-7"}
    )
    key = made["key"]
    status, v = await api.verify(listener, t, json={"key": key})
    assert status == 200 and v["valid"] and v["code"] == "ok", v
    assert v["key_id"] == made["id"] and v["account"] == "cus_v" and v["tier"] == "free"
    assert v["external_id"] == "u-7" and v["remaining"] == 4  # free: a burst of 5
    status, acct = await api.call("GET", "/v1/accounts/cus_v", t)
    assert acct["quota_used"] == 1  # counted as a request through Envoy is
    status, usage = await api.call("GET", "/v1/usage?customer=cus_v", await api.token())
    assert sum(w["counting"] for w in usage["windows"]) == 1
    assert sum(d["units"] for d in usage["days"]) == 1  # the portal's per-day numbers
    assert usage["days"][-1]["units"] == 1 and len(usage["days"]) == 62
    answers = [(await api.verify(listener, t, json={"key": key}))[1]
               for _ in range(6)]  # fmt: skip
    assert [a["code"] for a in answers][-1] == "rate_limited" and not answers[-1]["valid"]
    status, v = await api.verify(listener, t, json={"key": key, "feature": "x"})
    assert v["code"] == "feature_not_in_plan"
    for bad, code in (("", "missing_api_key"), ("tw_live_typo", "invalid_api_key")):
        status, v = await api.verify(listener, t, json={"key": bad})
        assert status == 200 and v["code"] == code and v["key_id"] is None
    await api.call("POST", "/v1/accounts/cus_v/suspend", await api.token({"accounts:write"}))
    await asyncio.sleep(0)
    status, v = await api.verify(listener, t, json={"key": key, "cost": 0})
    assert v["code"] == "payment_required"
    status, err = await api.verify(listener, t, json={"key": key, "cost": -1})
    assert status == 400 and err["error"]["field"] == "cost"
    status, err = await api.verify(listener, await api.token({"keys:read"}), json={"key": key})
    assert status == 403


async def test_the_gate_and_verify_reload_their_scripts_after_script_flush(api, redis):
    """The token's rate (count_in_window.lua) and verify (check.lua) run over the check
    engine's lean client, which loads a script again when Redis lost it."""
    t = await api.token({"keys:write", "verify"})
    status, made = await api.call("POST", "/v1/keys", t, json={"tier": "free", "customer": "cus_f"})
    assert status == 200
    await redis.script_flush()
    status, v = await api.call("POST", "/v1/keys/verify", t, json={"key": made["key"]})
    assert status == 200 and v["valid"], v


async def test_verify_listener_serves_verify_alone_with_the_api_conventions(api):
    """Verify's own port: another method is 405, another path a 404 that names the API's
    port, /healthz 200; a missing token 401 with its challenge; an Idempotency-Key replays the
    first answer and counts once; a body over the bound 413. Every error is the JSON shape."""
    session = api.client.session
    base = api.verify_url.removesuffix("/v1/keys/verify")
    t = await api.token({"keys:write", "verify", "accounts:read"})
    _, made = await api.call("POST", "/v1/keys", t, json={"tier": "pro", "customer": "cus_vl"})
    async with session.get(api.verify_url, headers={"Authorization": f"Bearer {t}"}) as r:
        assert (r.status, (await r.json())["error"]["code"]) == (405, "invalid_request")
    async with session.post(f"{base}/v1/keys", headers={"Authorization": f"Bearer {t}"}) as r:
        body = await r.json()
        assert r.status == 404 and "API's port" in body["error"]["message"]
    async with session.get(f"{base}/healthz") as r:
        assert r.status == 200
    async with session.post(api.verify_url, json={"key": made["key"]}) as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await r.json())["error"]["code"] == "unauthorized"
    once = {"Idempotency-Key": "verify-once"}
    first = await api.verify("verify", t, json={"key": made["key"]}, headers=once)
    again = await api.verify("verify", t, json={"key": made["key"]}, headers=once)
    assert first == again and first[0] == 200 and first[1]["valid"]
    _, acct = await api.call("GET", "/v1/accounts/cus_vl", t)
    assert acct["quota_used"] == 1
    status, err = await api.verify("verify", t, data=b"{" + b" " * 70_000 + b"}")
    assert (status, err["error"]["code"]) == (413, "body_too_large")


async def test_a_body_that_does_not_arrive_in_time_is_a_408(api):
    """A head that promises a body and a body that never comes: refused once the request's
    time bound passes (1 s here)."""
    port = int(api.verify_url.split(":")[2].split("/")[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/keys/verify HTTP/1.1\r\nhost: x\r\ncontent-length: 40\r\n\r\n{")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in answer


async def test_the_api_serves_prometheus_metrics(api):
    """GET /metrics, no token needed: the check engine's counts of verify's decisions."""
    t = await api.token({"keys:write", "verify"})
    _, made = await api.call("POST", "/v1/keys", t, json={"tier": "pro", "customer": "cus_m"})
    await api.verify("api", t, json={"key": made["key"]})
    async with api.client.get("/metrics") as r:
        text = await r.text()
    assert r.status == 200 and "tollway_authz_decisions_total" in text


async def test_verify_holds_the_token_rate_too(api):
    """Verify's hot admission (api/gate.py) holds the token's rate as well: of 300 verifies at
    once (50 a second in this test's settings) some are refused 429, and no more pass than 50
    for each second the burst touched, and the first, exact, one. On a starved machine
    (`make test-stress`, Redis Cluster) a few may be refused 503 instead, when Redis's answer
    misses the store timeout: a clear refusal, never one let past the rate."""
    _, made = await api.call(
        "POST", "/v1/keys", await api.token(), json={"tier": "pro", "customer": "cus_vr"}
    )
    t = await api.token({"verify"})
    start = time.monotonic()
    answers = await asyncio.gather(
        *(api.verify("verify", t, json={"key": made["key"]}) for _ in range(300))
    )
    seconds = math.ceil(time.monotonic() - start) + 1
    passed = sum(1 for status, _ in answers if status == 200)
    refused = {a["error"]["code"] for s, a in answers if s != 200}
    assert "rate_limited" in refused and refused <= {"rate_limited", "unavailable"}
    assert 0 < passed <= 50 * seconds + 1, (passed, seconds)


async def test_a_revoked_token_stops_verifying_within_the_token_cache_time(api):
    """A token is taken as read for TOKEN_CACHE_S on verify's hot path: revoked, it may verify
    until its reading is that old, and never after."""
    _, made = await api.call(
        "POST", "/v1/keys", await api.token(), json={"tier": "pro", "customer": "cus_rv"}
    )
    t = await api.token({"verify"})
    assert (await api.verify("verify", t, json={"key": made["key"]}))[0] == 200
    read = time.monotonic()  # the token's record was read by then
    hasher = api.tokens.hasher
    await api.tokens.revoke(hasher.key_id(hasher.digest(t)))
    await asyncio.sleep(max(0.0, read + TOKEN_CACHE_S - time.monotonic()))
    status, err = await api.verify("verify", t, json={"key": made["key"]})
    assert (status, err["error"]["code"]) == (401, "unauthorized")


@pytest.mark.parametrize("listener", ["api", "verify"])
async def test_verify_spends_a_prepaid_accounts_credits_and_says_the_balance(api, listener):
    """The shipped payg tier: verify spends a credit as Envoy's check does, answers the
    balance, and credits_exhausted when it cannot cover the call; the credit is not counted
    as usage for a meter."""
    t = await api.token({"keys:write", "verify", "accounts:write", "accounts:read"})
    status, made = await api.call("POST", "/v1/keys", t, json={"tier": "payg", "customer": "cus_p"})
    assert status == 200
    status, v = await api.verify(listener, t, json={"key": made["key"]})
    assert (v["valid"], v["code"], v["credits"]) == (False, "credits_exhausted", 0)
    await api.call("POST", "/v1/accounts/cus_p/credits", t,
                   json={"credits": 2, "reason": "test", "kind": "grant"})  # fmt: skip
    answers = [(await api.verify(listener, t, json={"key": made["key"]}))[1] for _ in range(3)]
    assert [(a["code"], a["credits"]) for a in answers] == [
        ("ok", 1), ("ok", 0), ("credits_exhausted", 0)
    ]  # fmt: skip
    status, credits = await api.call("GET", "/v1/accounts/cus_p/credits", t)
    assert credits["balance"] == credits["ledger_sum"] == 0
