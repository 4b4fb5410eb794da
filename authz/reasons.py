"""Why a request was denied: one StrEnum whose values appear in the JSON body, logs and metrics."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    MISSING_API_KEY = "missing_api_key"
    INVALID_API_KEY = "invalid_api_key"
    KEY_REVOKED = "key_revoked"
    PAYMENT_REQUIRED = "payment_required"
    FEATURE_NOT_IN_PLAN = "feature_not_in_plan"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    DAILY_LIMIT_EXCEEDED = "daily_limit_exceeded"
    HOURLY_LIMIT_EXCEEDED = "hourly_limit_exceeded"
    CONCURRENCY_EXCEEDED = "concurrency_exceeded"  # max_concurrent requests in flight
    CREDITS_EXHAUSTED = "credits_exhausted"  # a prepaid balance cannot cover the request
    STORE_UNAVAILABLE = "store_unavailable"
    OVERLOADED = "overloaded"  # authz could not finish the check in its deadline
    PLAN_UNAVAILABLE = "plan_unavailable"  # the key's tier is not in the loaded tier table
    ROUTE_MISCONFIGURED = "route_misconfigured"  # bad tollway_* context_extensions in Envoy

    @property
    def http_status(self) -> int:
        return _STATUS[self]

    @property
    def message(self) -> str:
        return _MESSAGE[self]


_STATUS = {
    Reason.MISSING_API_KEY: 401,
    Reason.INVALID_API_KEY: 401,
    Reason.KEY_REVOKED: 401,
    Reason.PAYMENT_REQUIRED: 402,
    Reason.CREDITS_EXHAUSTED: 402,
    Reason.FEATURE_NOT_IN_PLAN: 403,
    Reason.RATE_LIMITED: 429,
    Reason.QUOTA_EXCEEDED: 429,
    Reason.DAILY_LIMIT_EXCEEDED: 429,
    Reason.HOURLY_LIMIT_EXCEEDED: 429,
    Reason.CONCURRENCY_EXCEEDED: 429,
    Reason.STORE_UNAVAILABLE: 503,
    Reason.OVERLOADED: 503,
    Reason.PLAN_UNAVAILABLE: 503,
    Reason.ROUTE_MISCONFIGURED: 503,
}

_MESSAGE = {
    Reason.MISSING_API_KEY: "Send your API key in the x-api-key header or as 'Authorization: Bearer <key>'.",
    Reason.INVALID_API_KEY: "The API key is not valid. Check it for typos.",
    Reason.KEY_REVOKED: "This API key has been revoked.",
    Reason.PAYMENT_REQUIRED: "The subscription for this API key is not paid up.",
    Reason.FEATURE_NOT_IN_PLAN: "Your plan does not include this endpoint.",
    Reason.RATE_LIMITED: "Too many requests. Slow down and retry after the time in retry-after.",
    Reason.QUOTA_EXCEEDED: "The monthly quota of your plan is used up.",
    Reason.DAILY_LIMIT_EXCEEDED: "Your plan's requests for today (UTC) are used up.",
    Reason.HOURLY_LIMIT_EXCEEDED: "Your plan's requests for this hour are used up.",
    Reason.CONCURRENCY_EXCEEDED: (
        "Your plan's requests in flight at once are all taken. Retry when one finishes."
    ),
    Reason.CREDITS_EXHAUSTED: "Your prepaid credits cannot cover this request. Buy more to go on.",
    Reason.STORE_UNAVAILABLE: "The API cannot check keys right now. Retry shortly.",
    Reason.OVERLOADED: "The API is overloaded. Retry shortly.",
    Reason.PLAN_UNAVAILABLE: "Your plan is not available right now. Contact support.",
    Reason.ROUTE_MISCONFIGURED: "This endpoint is misconfigured. Contact support.",
}
