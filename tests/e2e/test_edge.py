"""Every decision as a client and the upstream see it through the real Envoy."""

from __future__ import annotations

import json
import time

import pytest

from cli.main import main as cli
from tests.e2e.conftest import fetch
from tollway import schema

pytestmark = pytest.mark.e2e


def error_code(r) -> str:
    assert r.headers["content-type"] == "application/json"
    return r.json()["error"]["code"]


def test_allowed_request_reaches_upstream_with_identity_and_without_key(edge):
    """200: upstream gets x-tollway-* and no key; the client gets RateLimit-* headers."""
    key, key_id = edge.issue("pro", customer="cus_allowed")
    r = edge.get("/v1/things", key)
    assert r.status == 200
    assert r.upstream_saw("x-tollway-customer") == ["cus_allowed"]
    assert r.upstream_saw("x-tollway-tier") == ["pro"]
    assert r.upstream_saw("x-tollway-key-id") == [key_id]
    assert r.upstream_saw("x-tollway-degraded") == []  # not set by tollway here: removed
    assert r.upstream_saw("x-tollway-dry-run") == []
    assert r.upstream_saw("x-api-key") == []
    assert key not in r.body.decode()
    assert (r.headers["ratelimit-limit"], r.headers["ratelimit-remaining"]) == ("20", "19")
    assert r.headers["ratelimit-policy"] == "20;w=2" and "ratelimit-reset" in r.headers
    assert edge.usage(key_id) == 1


def test_bearer_key_is_accepted_and_stripped(edge):
    """Authorization: Bearer works, and the header never reaches the upstream."""
    key, _ = edge.issue("pro")
    r = edge.get("/v1/things", headers={"authorization": f"Bearer {key}"})
    assert r.status == 200
    assert r.upstream_saw("authorization") == []


def test_spoofed_tollway_headers_are_overwritten(edge):
    """Client-sent x-tollway-* headers, even duplicated, never reach the upstream unchanged."""
    key, key_id = edge.issue("pro", customer="cus_real")
    spoof = [("x-api-key", key), ("x-tollway-customer", "cus_evil"), ("x-tollway-customer", "cus_evil2"),
             ("X-Tollway-Tier", "enterprise"), ("x-tollway-key-id", "0000000000000000"),
             ("x-tollway-degraded", "store_unavailable"), ("X-TOLLWAY-DRY-RUN", "rate_limited")]  # fmt: skip
    from tests.e2e.conftest import request

    r = request(edge.stack.ports.envoy, "/v1/things", spoof)
    assert r.status == 200
    assert r.upstream_saw("x-tollway-customer") == ["cus_real"]
    assert r.upstream_saw("x-tollway-tier") == ["pro"]
    assert r.upstream_saw("x-tollway-key-id") == [key_id]


def test_missing_key_is_401(edge):
    """No key: 401 missing_api_key, JSON body, www-authenticate: Bearer."""
    r = edge.get("/v1/things")
    assert r.status == 401 and error_code(r) == "missing_api_key"
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("bad", ["garbage", "tw_live_" + "A" * 49])
def test_malformed_key_is_401_invalid(edge, bad):
    """A malformed or bad-checksum key: 401 invalid_api_key."""
    r = edge.get("/v1/things", bad)
    assert r.status == 401 and error_code(r) == "invalid_api_key"


def test_well_formed_unknown_key_is_401_invalid(edge):
    """A key with a valid checksum but no record: 401 invalid_api_key."""
    from tollway.keys import generate_key

    r = edge.get("/v1/things", generate_key())
    assert r.status == 401 and error_code(r) == "invalid_api_key"


def test_revoked_key_is_401_key_revoked(edge):
    """After `tollway keys revoke`, the key gets 401 key_revoked at once."""
    key, key_id = edge.issue("pro")
    assert edge.get("/v1/things", key).status == 200
    assert cli(["keys", "revoke", key_id, "--redis-url", edge.stack.effective_redis_url]) == 0
    r = edge.get("/v1/things", key)
    assert r.status == 401 and error_code(r) == "key_revoked"


def test_suspend_gives_402_and_resume_restores(edge):
    """`tollway keys suspend` gives 402 payment_required; resume brings back 200."""
    key, key_id = edge.issue("pro")
    url = edge.stack.effective_redis_url
    assert cli(["keys", "suspend", key_id, "--redis-url", url]) == 0
    r = edge.get("/v1/things", key)
    assert r.status == 402 and error_code(r) == "payment_required"
    assert cli(["keys", "resume", key_id, "--redis-url", url]) == 0
    assert edge.get("/v1/things", key).status == 200


def test_pending_key_is_402(edge):
    """A key whose subscription is not yet paid (pending) gets 402."""
    key, _ = edge.issue("pro", status="pending")
    assert edge.get("/v1/things", key).status == 402


def test_past_due_within_grace_is_allowed_with_warning_then_402(edge):
    """past_due: 200 with x-tollway-warning during grace; 402 once grace has passed."""
    key, key_id = edge.issue("pro", status="past_due", grace_until=str(int(time.time()) + 3600))
    r = edge.get("/v1/things", key)
    assert r.status == 200 and r.headers["x-tollway-warning"].startswith("payment overdue")
    record = schema.key_record(key_id, edge.accounts[key_id])
    edge.redis.hset(record, "grace_until", str(int(time.time()) - 1))
    r = edge.get("/v1/things", key)
    assert r.status == 402 and error_code(r) == "payment_required"


def test_feature_route_is_403_without_the_feature(edge):
    """/v1/analytics requires the analytics feature: 403 for free, 200 for pro."""
    free, _ = edge.issue("free")
    r = edge.get("/v1/analytics", free)
    assert r.status == 403 and error_code(r) == "feature_not_in_plan"
    pro, _ = edge.issue("pro")
    assert edge.get("/v1/analytics", pro).status == 200


def test_rate_limit_is_429_with_retry_after(edge):
    """free (burst 5): the sixth quick request is 429 rate_limited with retry-after."""
    key, key_id = edge.issue("free")
    statuses = [edge.get("/v1/things", key).status for _ in range(5)]
    r = edge.get("/v1/things", key)
    assert statuses == [200] * 5
    assert r.status == 429 and error_code(r) == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    assert (r.headers["ratelimit-limit"], r.headers["ratelimit-remaining"]) == ("5", "0")
    assert edge.usage(key_id) == 5


def test_route_cost_of_5_drains_5_tokens(edge):
    """/v1/reports costs 5: one call leaves 15 of pro's 20 tokens."""
    key, _ = edge.issue("pro")
    r = edge.get("/v1/reports/daily", key)
    assert r.status == 200 and r.headers["ratelimit-remaining"] == "15"
    r = edge.get("/v1/things", key)
    assert r.headers["ratelimit-remaining"] == "14"


def test_quota_exhausted_is_429_quota_exceeded(edge):
    """capped (quota 3, block): the fourth request is 429 quota_exceeded until the period ends."""
    key, _ = edge.issue("capped")
    assert [edge.get("/v1/things", key).status for _ in range(3)] == [200] * 3
    r = edge.get("/v1/things", key)
    assert r.status == 429 and error_code(r) == "quota_exceeded"
    assert int(r.headers["retry-after"]) > 29 * 86400
    assert r.headers["ratelimit-limit"] == "3"


def test_dry_run_tier_is_never_denied(edge):
    """shadow (burst 2, dry run): past the burst it still gets 200, marked x-tollway-dry-run."""
    key, key_id = edge.issue("shadow")
    rs = [edge.get("/v1/things", key) for _ in range(4)]
    assert [r.status for r in rs] == [200] * 4
    assert rs[-1].headers["x-tollway-dry-run"] == "rate_limited"
    assert edge.usage(key_id) == 4


def test_healthz_needs_no_key(edge):
    """/healthz has ext_authz disabled per route."""
    r = edge.get("/healthz")
    assert r.status == 200 and r.body == b"ok\n"


def test_no_plaintext_key_in_any_log(edge):
    """No issued key appears in any process's log output (authz, Envoy, Redis, upstream)."""
    key, _ = edge.issue("pro")
    before = len(edge.logs)
    edge.get("/v1/things", key)
    edge.get("/v1/things", key + "x")  # a near-miss key is logged as invalid, but not echoed
    deadline = time.monotonic() + 10
    while not any("invalid_api_key" in line for line in edge.logs[before:]):  # its log line
        assert time.monotonic() < deadline, "authz never logged the near-miss key's denial"
        time.sleep(0.02)
    blob = "\n".join(edge.logs)
    assert "authz" in blob and "envoy" in blob
    assert all(k not in blob for k in edge.issued)


def test_metrics_count_decisions_by_reason(edge):
    """authz's /metrics counts decisions with the same reason labels as the JSON bodies."""
    from tests.e2e.conftest import fetch

    edge.get("/v1/things")
    url = f"http://127.0.0.1:{edge.stack.ports.authz_metrics}/metrics"
    text = fetch(url)[1].decode()
    assert 'tollway_authz_decisions_total{reason="missing_api_key"}' in text
    assert 'tollway_authz_decisions_total{reason="ok"}' in text
    assert "tollway_authz_check_seconds_bucket" in text


@pytest.mark.grpc_only
def test_grpc_health_and_reflection_are_served(edge):
    """authz answers grpc.health.v1 SERVING and lists the Authorization service by reflection."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{edge.stack.ports.authz}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "envoy.service.auth.v3.Authorization"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(stub.ServerReflectionInfo(iter([req]), timeout=5)))
        names = {s.name for s in reply.list_services_response.service}
        assert {"envoy.service.auth.v3.Authorization", "grpc.health.v1.Health"} <= names


def test_health_is_served_in_the_stacks_mode(edge, authz_mode):
    """The health check Envoy runs against authz answers SERVING, in either mode."""
    if authz_mode == "http":
        status, body = fetch(f"http://127.0.0.1:{edge.stack.ports.authz}/healthz")
        assert (status, json.loads(body)) == (200, {"status": "serving"})
    else:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(f"127.0.0.1:{edge.stack.ports.authz}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_secret_scan_finds_a_planted_key_and_secret(edge):
    """The scan every stack runs on exit (conftest.running_edge) would catch a leak."""
    from tests.e2e.conftest import redis_values, secrets_in

    key, _ = edge.issue("pro")
    assert secrets_in(redis_values(edge.redis), "Redis", edge.stack.webhook_secret) == []
    edge.redis.hset("tw:{planted}:x", "note", f"oops {key}")
    edge.redis.set("tw:{planted}:y", edge.stack.webhook_secret)
    try:
        found = secrets_in(redis_values(edge.redis), "Redis", edge.stack.webhook_secret)
        assert len(found) == 2
        assert secrets_in([f"log line with {key}"], "logs", "whsec_x") != []
    finally:
        edge.redis.delete("tw:{planted}:x", "tw:{planted}:y")


def test_tollway_health_reports_each_running_service(edge, monkeypatch, capsys, authz_mode):
    """`tollway health SERVICE` (the image's HEALTHCHECK) exits 0 for each service of the
    running stack, and 1 with the reason when nothing serves on the configured port."""
    from cli.main import main as cli
    from devkit.stack import free_port

    ports = edge.stack.ports
    monkeypatch.setenv("TOLLWAY_AUTHZ_PORT", str(ports.authz))
    monkeypatch.setenv("TOLLWAY_AUTHZ_MODE", authz_mode)
    monkeypatch.setenv("TOLLWAY_WEBHOOK_PORT", str(ports.webhook))
    monkeypatch.setenv("TOLLWAY_METERING_PORT", str(ports.metering))
    monkeypatch.setenv("TOLLWAY_STANDIN_PORT", str(ports.standin))
    for service in ("authz", "webhook", "metering", "stripe-standin"):
        assert cli(["health", service]) == 0, capsys.readouterr().out
        assert f"{service}: serving" in capsys.readouterr().out
    for var, service in (("TOLLWAY_AUTHZ_PORT", "authz"), ("TOLLWAY_WEBHOOK_PORT", "webhook")):
        monkeypatch.setenv(var, str(free_port()))
        assert cli(["health", service]) == 1
        assert f"{service}: not serving" in capsys.readouterr().out


def cli_key(capsys, *args: str) -> str:
    """Run a `tollway keys ...` command that prints a new key; the key."""
    capsys.readouterr()
    assert cli(["keys", *args]) == 0
    return capsys.readouterr().out.strip()


def test_rotation_keeps_the_account_quota(edge, capsys):
    """capped (quota 3, block): after 3 requests, `tollway keys rotate --overlap 60` gives a
    key that is refused too: the quota belongs to the account, not the key."""
    key, _ = edge.issue("capped")
    assert [edge.get("/v1/things", key).status for _ in range(3)] == [200] * 3
    new = cli_key(capsys, "rotate", key, "--overlap", "60",
                  "--redis-url", edge.stack.effective_redis_url)  # fmt: skip
    edge.issued.append(new)
    assert new != key
    for k in (new, key):  # the old key still works in the overlap, on the same quota
        r = edge.get("/v1/things", k)
        assert r.status == 429 and error_code(r) == "quota_exceeded"


def test_a_second_key_of_a_customer_shares_the_quota(edge, capsys):
    """Two keys made with `tollway keys create --tier capped --customer C` get 3 in all."""
    url = edge.stack.effective_redis_url
    customer = f"cus_two_{time.time_ns()}"
    keys = [cli_key(capsys, "create", "--tier", "capped", "--customer", customer,
                    "--redis-url", url, "--tiers", str(edge.stack.tiers)) for _ in range(2)]  # fmt: skip
    edge.issued += keys
    statuses = [edge.get("/v1/things", keys[i % 2]).status for i in range(6)]
    assert statuses == [200, 200, 200, 429, 429, 429]
    capsys.readouterr()
    assert cli(["accounts", "show", customer, "--redis-url", url,
                "--tiers", str(edge.stack.tiers)]) == 0  # fmt: skip
    shown = capsys.readouterr().out
    assert "used          3 of 3 requests this period" in shown and shown.count("capped") >= 3


def test_a_second_key_of_a_customer_shares_the_bucket(edge):
    """big (burst 50, refill 0.001/s): 60 requests over two keys of one customer, 50 pass."""
    customer = f"cus_burst_{time.time_ns()}"
    keys = [edge.issue("big", customer=customer)[0] for _ in range(2)]
    statuses = [edge.get("/v1/things", keys[i % 2]).status for i in range(60)]
    assert statuses.count(200) == 50 and statuses.count(429) == 10


def test_an_account_s_own_limits_apply_at_the_edge(edge):
    """`tollway accounts set-limits ACCOUNT --burst 2`: the next requests see burst 2 in their
    RateLimit headers and a 429 at the third; --clear brings the tier's burst back."""
    customer = f"cus_limits_{time.time_ns()}"
    key, _ = edge.issue("big", customer=customer)  # burst 50, refill 0.001/s
    assert edge.get("/v1/things", key).headers["ratelimit-limit"] == "50"
    url = edge.stack.effective_redis_url
    assert cli(["accounts", "set-limits", customer, "--burst", "2", "--redis-url", url]) == 0
    statuses = [edge.get("/v1/things", key) for _ in range(3)]
    assert [r.status for r in statuses] == [200, 200, 429]
    assert statuses[0].headers["ratelimit-limit"] == "2"
    assert cli(["accounts", "set-limits", customer, "--burst", "x", "--redis-url", url]) == 1
    assert cli(["accounts", "set-limits", customer, "--clear", "--redis-url", url]) == 0
    assert edge.get("/v1/things", key).headers["ratelimit-limit"] == "50"


def test_an_hour_s_cap_is_429_until_the_hour_ends(edge, capsys):
    """`set-limits --per-hour 2` on a pro account (no cap of its own): the third request this
    UTC hour is 429 hourly_limit_exceeded, retry-after pointing at the hour's end, counted
    nowhere; `accounts show` says 2 of 2; --clear lifts it."""
    customer = f"cus_hour_{time.time_ns()}"
    key, key_id = edge.issue("pro", customer=customer)
    url = edge.stack.effective_redis_url
    assert cli(["accounts", "set-limits", customer, "--per-hour", "2", "--redis-url", url]) == 0
    if 3600 - time.time() % 3600 < 5:  # the three requests must fall in one hour
        time.sleep(6)
    before = int(time.time())
    rs = [edge.get("/v1/things", key) for _ in range(3)]
    assert [r.status for r in rs] == [200, 200, 429]
    assert error_code(rs[2]) == "hourly_limit_exceeded"
    wait = int(rs[2].headers["retry-after"])
    assert 0 < wait <= 3600 - before % 3600 + 1  # the hour's end, from when it was asked
    assert rs[2].headers["ratelimit-limit"] == "2"
    assert 'comment="UTC hour"' in rs[2].headers["ratelimit-policy"]
    assert edge.usage(key_id) == 2
    capsys.readouterr()
    assert cli(["accounts", "show", customer, "--redis-url", url]) == 0
    assert "2 of 2 requests this hour (UTC)" in capsys.readouterr().out
    assert cli(["accounts", "set-limits", customer, "--clear", "--redis-url", url]) == 0
    assert edge.get("/v1/things", key).status == 200
