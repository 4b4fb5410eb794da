"""The decision, pure: from what the request carried and what the store answered to a verdict.

No I/O and no clock of its own. ``responses.build`` turns a ``Decision`` into Envoy's
CheckResponse; the servicer only wires the two together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from authz.check_reply import CheckReply, Code
from authz.reasons import Reason
from authz.request import RequestInfo
from tollway.errors import error_body
from tollway.records import DAY_S, HOUR_S
from tollway.tiers import OnStoreError, Tier

Headers = tuple[tuple[str, str], ...]

CUSTOMER_HEADER = "x-tollway-customer"
TIER_HEADER = "x-tollway-tier"
KEY_ID_HEADER = "x-tollway-key-id"
WARNING_HEADER = "x-tollway-warning"
DEGRADED_HEADER = "x-tollway-degraded"
DRY_RUN_HEADER = "x-tollway-dry-run"
EXTERNAL_ID_HEADER = "x-tollway-external-id"  # the operator's own id for the key's user
# To the client of a prepaid tier: the account's balance after this request (or, refused for
# it, the balance that could not cover it)
CREDITS_HEADER = "x-tollway-credits-remaining"


@dataclass(frozen=True)
class _Spent:
    """A count the request found spent: the tier field that bounds it, its window (None: the
    billing period, whose length varies: what is left of it) and the window's name."""

    field: str
    window_s: int | None
    name: str


_SPENT = {
    Reason.QUOTA_EXCEEDED: _Spent("monthly_quota", None, "billing period"),
    Reason.DAILY_LIMIT_EXCEEDED: _Spent("per_day", DAY_S, "UTC day"),
    Reason.HOURLY_LIMIT_EXCEEDED: _Spent("per_hour", HOUR_S, "UTC hour"),
}

_REASON = {
    Code.UNKNOWN_KEY: Reason.INVALID_API_KEY,
    Code.REVOKED: Reason.KEY_REVOKED,
    Code.PAYMENT: Reason.PAYMENT_REQUIRED,
    Code.FEATURE: Reason.FEATURE_NOT_IN_PLAN,
    Code.QUOTA: Reason.QUOTA_EXCEEDED,
    Code.DAY: Reason.DAILY_LIMIT_EXCEEDED,
    Code.HOUR: Reason.HOURLY_LIMIT_EXCEEDED,
    Code.CONCURRENCY: Reason.CONCURRENCY_EXCEEDED,
    Code.CREDITS: Reason.CREDITS_EXHAUSTED,
    Code.RATE: Reason.RATE_LIMITED,
    Code.NO_TIER: Reason.PLAN_UNAVAILABLE,
}


# Not frozen, for speed: see CheckReply (authz/check_reply.py).
@dataclass(slots=True)
class Decision:
    reason: Reason | None  # None: allowed
    message: str = ""
    key_id: str = ""
    customer: str = ""
    tier: str = ""
    client_headers: Headers = ()  # on the response to the API client
    upstream_headers: Headers = ()  # set (overwriting) on the request to the upstream
    strip: tuple[str, ...] = ()  # request headers removed before the upstream
    would_deny: Reason | None = None  # dry run: the denial that was not enforced
    degraded: bool = False  # allowed without the store (on_store_error = "allow")
    # Allowed and counted: the request's id and its signed usage stamp (tollway/usage_stamp.py),
    # dynamic metadata for Envoy's access log. "" when the usage log is off.
    request_id: str = ""
    usage_stamp: str = ""

    @property
    def allowed(self) -> bool:
        return self.reason is None

    def body(self) -> str:
        assert self.reason is not None
        return error_body(self.reason.value, self.message)


def deny(
    reason: Reason,
    message: str = "",
    headers: Headers = (),
    *,
    key_id: str = "",
    customer: str = "",
    tier: str = "",
) -> Decision:
    return Decision(
        reason=reason,
        message=message or reason.message,
        client_headers=headers,
        key_id=key_id,
        customer=customer,
        tier=tier,
    )


def missing_key() -> Decision:
    return deny(Reason.MISSING_API_KEY, headers=(("www-authenticate", 'Bearer realm="tollway"'),))


def invalid_key(key_id: str = "") -> Decision:
    challenge = 'Bearer realm="tollway", error="invalid_token"'
    return deny(Reason.INVALID_API_KEY, headers=(("www-authenticate", challenge),), key_id=key_id)


def _ceil_s(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


def _policy(tier: Tier) -> str:
    return _policy_text(tier.burst, tier.requests_per_second)


@lru_cache(maxsize=1024)
def _policy_text(burst: int, rate: float) -> str:
    return f"{burst};w={max(1, math.ceil(burst / rate))}"


def _bucket_headers(tier: Tier, remaining: int, reset_s: int) -> Headers:
    return (
        ("ratelimit-limit", str(tier.burst)),
        ("ratelimit-remaining", str(remaining)),
        ("ratelimit-reset", str(reset_s)),
        ("ratelimit-policy", _policy(tier)),
    )


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Every request header tollway may set for the upstream. Those an answer does not set are
# removed, so that a client cannot pass one off as tollway's (the ones it sets overwrite).
UPSTREAM_HEADERS = (
    CUSTOMER_HEADER,
    TIER_HEADER,
    KEY_ID_HEADER,
    DEGRADED_HEADER,
    DRY_RUN_HEADER,
    EXTERNAL_ID_HEADER,
)


@lru_cache(maxsize=64)
def _strip(credential: tuple[str, ...], degraded: bool, external: bool) -> tuple[str, ...]:
    """The credential's headers, and every tollway header this answer does not set."""
    sets = {CUSTOMER_HEADER, TIER_HEADER, KEY_ID_HEADER}
    sets |= {DEGRADED_HEADER} if degraded else set()
    sets |= {EXTERNAL_ID_HEADER} if external else set()
    return credential + tuple(h for h in UPSTREAM_HEADERS if h not in sets)


def _allowed(
    req: RequestInfo,
    key_id: str,
    customer: str,
    tier: Tier,
    client: Headers,
    *,
    upstream_extra: Headers = (),
    would_deny: Reason | None = None,
    degraded: bool = False,
    external_id: str = "",
) -> Decision:
    upstream = (
        (CUSTOMER_HEADER, customer),
        (TIER_HEADER, tier.name),
        (KEY_ID_HEADER, key_id),
        *upstream_extra,
    )
    if external_id:
        upstream += ((EXTERNAL_ID_HEADER, external_id),)
    return Decision(
        reason=None,
        key_id=key_id,
        customer=customer,
        tier=tier.name,
        client_headers=client,
        upstream_headers=upstream,
        strip=_strip(req.strip, bool(upstream_extra), bool(external_id)),
        would_deny=would_deny,
        degraded=degraded,
    )


def on_reply(
    req: RequestInfo, key_id: str, out: CheckReply, tier: Tier | None, external_id: str = ""
) -> Decision:
    """The verdict for a request whose key reached the store and got ``out`` back.

    ``tier`` is the loaded tier named by ``out.tier``, or None if the table has no such tier;
    ``external_id`` the key's (the operator's id for its user; "" for none), which an allowed
    request carries to the upstream.
    """

    def refuse(reason: Reason, message: str = "", headers: Headers = ()) -> Decision:
        return deny(reason, message, headers, key_id=key_id, customer=out.customer, tier=out.tier)

    if out.code is Code.OK and tier is not None:
        client = _bucket_headers(tier, out.remaining, math.ceil(out.wait_ms / 1000))
        if out.grace_until:
            note = f"payment overdue; access ends at {_iso(out.grace_until)}"
            client += ((WARNING_HEADER, note),)
        would = _REASON.get(out.would_deny)
        if would is not None:
            client += ((DRY_RUN_HEADER, would.value),)
        if out.credits is not None:
            client += ((CREDITS_HEADER, str(out.credits)),)
        return _allowed(
            req, key_id, out.customer, tier, client, would_deny=would, external_id=external_id
        )

    reason = _REASON.get(out.code, Reason.PLAN_UNAVAILABLE)
    if reason is Reason.INVALID_API_KEY:
        return invalid_key(key_id)
    if reason in (Reason.KEY_REVOKED, Reason.FEATURE_NOT_IN_PLAN):
        return refuse(reason)
    if reason is Reason.PAYMENT_REQUIRED:
        if out.grace_until:
            msg = f"{reason.message} The grace period ended at {_iso(out.grace_until)}."
            return refuse(reason, msg)
        return refuse(reason)
    # Rate and quota verdicts quote the tier's limits, so they need the tier itself.
    if tier is None or reason is Reason.PLAN_UNAVAILABLE:
        return refuse(Reason.PLAN_UNAVAILABLE)
    if reason is Reason.CREDITS_EXHAUSTED:
        need = tier.credits_per_request * req.cost
        balance = out.credits or 0
        msg = (
            f"This request costs {need} credits and your balance is {balance}. "
            "Buy more credits to go on."
        )
        return refuse(reason, msg, ((CREDITS_HEADER, str(balance)),))
    if reason is Reason.CONCURRENCY_EXCEEDED:
        # No RateLimit headers: they describe a quota over a window, and this is neither.
        msg = (
            f"Your plan allows {tier.max_concurrent} requests in flight at once, and all are "
            "taken. Retry when one finishes."
        )
        return refuse(reason, msg, (("retry-after", str(_ceil_s(out.wait_ms))),))
    if reason is Reason.RATE_LIMITED:
        if out.wait_ms < 0:
            msg = f"This endpoint costs {req.cost} requests, more than your plan's burst of {tier.burst}."
            return refuse(reason, msg, _bucket_headers(tier, out.remaining, 0))
        wait = _ceil_s(out.wait_ms)
        headers = (("retry-after", str(wait)), *_bucket_headers(tier, out.remaining, wait))
        return refuse(reason, headers=headers)
    # The quota, the day's or the hour's cap, the reasons left: refused until its window
    # ends, which check.lua's wait_ms reaches (the period's end, for the quota).
    spent = _SPENT[reason]
    limit = getattr(tier, spent.field)
    wait = _ceil_s(out.wait_ms)
    headers = (
        ("retry-after", str(wait)),
        ("ratelimit-limit", str(limit)),
        ("ratelimit-remaining", "0"),
        ("ratelimit-reset", str(wait)),
        ("ratelimit-policy", f'{limit};w={spent.window_s or wait};comment="{spent.name}"'),
    )
    ends = (out.now_ms + out.wait_ms) // 1000
    return refuse(reason, f"{reason.message} It resets at {_iso(ends)}.", headers)


def on_store_error(
    req: RequestInfo, key_id: str, customer: str | None, tier: Tier | None
) -> Decision:
    """The verdict when the store could not be asked.

    ``customer`` is who this process last saw the presented key allowed as (None if it was
    not), ``tier`` the key's tier as the store last reported it. A key never seen allowed
    cannot be trusted without the store, so only such a key on a tier with
    ``on_store_error = "allow"`` is let through, marked as degraded.
    """
    if customer is None or tier is None or tier.on_store_error is not OnStoreError.ALLOW:
        return deny(Reason.STORE_UNAVAILABLE, key_id=key_id, tier=tier.name if tier else "")
    if req.feature is not None and req.feature not in tier.features:
        return deny(Reason.FEATURE_NOT_IN_PLAN, key_id=key_id, customer=customer, tier=tier.name)
    mark = ((DEGRADED_HEADER, Reason.STORE_UNAVAILABLE.value),)
    return _allowed(req, key_id, customer, tier, mark, upstream_extra=mark, degraded=True)
