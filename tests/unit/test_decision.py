"""The pure decision: script outcomes and store errors to verdicts, headers and bodies."""

from __future__ import annotations

import json

import pytest

from authz.check_reply import CheckReply, Code
from authz.decision import on_reply, on_store_error
from authz.reasons import Reason
from authz.request import RequestInfo
from tests.support import TEST_TIERS
from tollway.tiers import parse_tiers

TABLE = parse_tiers(TEST_TIERS, "test")
REQ = RequestInfo(key="k", strip=("x-api-key",))
NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def out(code: Code, tier: str = "free", **kw) -> CheckReply:
    return CheckReply(code, tier, "cus_1", now_ms=NOW_MS, **kw)


def test_allowed_sets_upstream_identity_and_ratelimit_headers():
    """OK: customer, tier and key id go upstream; RateLimit-* go to the client."""
    d = on_reply(REQ, "kid1", out(Code.OK, remaining=3, wait_ms=1500), TABLE.get("free"))
    # The key is stripped, and so are the tollway headers this answer does not set.
    assert d.allowed and d.strip == (
        "x-api-key",
        "x-tollway-degraded",
        "x-tollway-dry-run",
        "x-tollway-external-id",  # the key has none: a client's own is not passed on
    )
    assert d.upstream_headers == (
        ("x-tollway-customer", "cus_1"),
        ("x-tollway-tier", "free"),
        ("x-tollway-key-id", "kid1"),
    )
    assert d.client_headers == (
        ("ratelimit-limit", "5"),
        ("ratelimit-remaining", "3"),
        ("ratelimit-reset", "2"),
        ("ratelimit-policy", "5;w=5"),
    )


def test_a_key_with_an_external_id_sends_it_upstream():
    """The operator's id for the key's user goes upstream, set by tollway alone."""
    d = on_reply(REQ, "kid1", out(Code.OK), TABLE.get("free"), external_id="user-42")
    assert ("x-tollway-external-id", "user-42") in d.upstream_headers
    assert "x-tollway-external-id" not in d.strip  # set (overwriting), not removed
    denied = on_reply(REQ, "kid1", out(Code.RATE, wait_ms=10), TABLE.get("free"), "user-42")
    assert not denied.allowed and not denied.upstream_headers


def test_past_due_in_grace_is_allowed_with_a_warning():
    """A key in its grace period passes and the client is told payment is overdue."""
    d = on_reply(REQ, "kid1", out(Code.OK, grace_until=1_767_312_000), TABLE.get("free"))
    assert d.allowed
    assert (
        "x-tollway-warning",
        "payment overdue; access ends at 2026-01-02T00:00:00Z",
    ) in d.client_headers


def test_dry_run_denial_is_allowed_and_marked():
    """A dry-run tier's would-be denial is let through, recorded and shown."""
    d = on_reply(REQ, "kid1", out(Code.OK, "shadow", would_deny=Code.RATE), TABLE.get("shadow"))
    assert d.allowed and d.would_deny is Reason.RATE_LIMITED
    assert ("x-tollway-dry-run", "rate_limited") in d.client_headers


def test_rate_limited_has_retry_after_rounded_up():
    """429 rate_limited carries retry-after in whole seconds, rounded up."""
    d = on_reply(REQ, "kid1", out(Code.RATE, remaining=0, wait_ms=1001), TABLE.get("free"))
    assert d.reason is Reason.RATE_LIMITED and d.reason.http_status == 429
    headers = dict(d.client_headers)
    assert headers["retry-after"] == "2" and headers["ratelimit-remaining"] == "0"
    assert headers["ratelimit-reset"] == "2"
    assert json.loads(d.body())["error"]["code"] == "rate_limited"


def test_route_costlier_than_burst_says_so():
    """A route whose cost exceeds the tier's burst can never pass; the message says why."""
    d = on_reply(
        RequestInfo("k", (), cost=9), "kid1", out(Code.RATE, wait_ms=-1), TABLE.get("free")
    )
    assert d.reason is Reason.RATE_LIMITED and "retry-after" not in dict(d.client_headers)
    assert "costs 9 requests, more than your plan's burst of 5" in d.message


def test_quota_exceeded_retries_at_period_end():
    """429 quota_exceeded says when the period resets, in retry-after and the message."""
    d = on_reply(
        REQ, "kid1", out(Code.QUOTA, "capped", wait_ms=86_400_000, period_end=1_767_312_000),
        TABLE.get("capped"),
    )  # fmt: skip
    assert d.reason is Reason.QUOTA_EXCEEDED
    headers = dict(d.client_headers)
    assert headers["retry-after"] == "86400" and headers["ratelimit-limit"] == "3"
    assert headers["ratelimit-remaining"] == "0"
    assert "resets at 2026-01-02T00:00:00Z" in d.message


@pytest.mark.parametrize(
    ("code", "reason", "status"),
    [
        (Code.UNKNOWN_KEY, Reason.INVALID_API_KEY, 401),
        (Code.REVOKED, Reason.KEY_REVOKED, 401),
        (Code.PAYMENT, Reason.PAYMENT_REQUIRED, 402),
        (Code.FEATURE, Reason.FEATURE_NOT_IN_PLAN, 403),
    ],
)
def test_store_denials_map_to_reasons(code, reason, status):
    """Each script code maps to its reason and HTTP status with a JSON body."""
    d = on_reply(REQ, "kid1", out(code), TABLE.get("free"))
    assert d.reason is reason and reason.http_status == status
    assert json.loads(d.body()) == {"error": {"code": reason.value, "message": d.message}}


def test_unknown_key_carries_a_bearer_challenge():
    """401 invalid_api_key says invalid_token in www-authenticate, as RFC 6750 asks."""
    d = on_reply(REQ, "kid1", out(Code.UNKNOWN_KEY, ""), None)
    assert d.reason is Reason.INVALID_API_KEY
    assert dict(d.client_headers)["www-authenticate"].endswith('error="invalid_token"')


def test_tier_missing_from_table_is_plan_unavailable():
    """A record naming a tier the table lacks is a 503, not an allow."""
    d = on_reply(REQ, "kid1", out(Code.NO_TIER, "gone"), None)
    assert d.reason is Reason.PLAN_UNAVAILABLE and d.reason.http_status == 503


def test_past_due_after_grace_names_when_it_ended():
    """402 after the grace period says when the grace ended."""
    d = on_reply(REQ, "kid1", out(Code.PAYMENT, grace_until=1_767_312_000), TABLE.get("free"))
    assert d.reason is Reason.PAYMENT_REQUIRED and "2026-01-02T00:00:00Z" in d.message


def test_store_error_allows_known_key_on_allow_tier():
    """on_store_error=allow lets a key seen before through, marked degraded both ways."""
    d = on_store_error(REQ, "kid1", "cus_1", TABLE.get("resilient"))
    assert d.allowed and d.degraded
    assert ("x-tollway-degraded", "store_unavailable") in d.upstream_headers
    assert "x-tollway-degraded" not in d.strip  # set (overwriting), so not removed
    assert ("x-tollway-customer", "cus_1") in d.upstream_headers
    assert ("x-tollway-degraded", "store_unavailable") in d.client_headers


@pytest.mark.parametrize(("known", "tier"), [("cus_1", "free"), (None, None), ("cus_1", None)])
def test_store_error_denies_unless_known_and_allowed(known, tier):
    """A deny tier, an unseen key, or an unknown tier gets 503 store_unavailable."""
    d = on_store_error(REQ, "kid1", known, TABLE.get(tier) if tier else None)
    assert d.reason is Reason.STORE_UNAVAILABLE


def test_store_error_still_gates_features():
    """Degraded mode does not open feature-gated routes to tiers without the feature."""
    req = RequestInfo("k", (), feature="reports")
    d = on_store_error(req, "kid1", "cus_1", TABLE.get("resilient"))
    assert d.reason is Reason.FEATURE_NOT_IN_PLAN


def test_a_prepaid_reply_reads_the_same_from_the_fast_and_the_general_path():
    """check.lua's 20-place reply of a prepaid tier: the balance and the credits spent, as
    the lean client decodes it (text and integers) and as redis-py does (bytes)."""
    from authz.check_reply import CheckReply, Code

    tail = ["", "", "", "", "", "", "", 10**15, 2]
    lean = CheckReply.parse([0, "payg", "cus_1", 5, 0, 3, 100, 0, 0, 7, 0, *tail])
    raw = [0, b"payg", b"cus_1", 5, 0, 3, 100, 0, 0, 7, 0, *(b"" for _ in range(7)), 10**15, 2]
    general = CheckReply.parse(raw)
    assert lean == general
    assert (lean.code, lean.credits, lean.charged, lean.limits) == (Code.OK, 10**15, 2, None)
