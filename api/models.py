"""The management API's request and response bodies: the one source of what it accepts and
answers. Handlers validate with these models, and the OpenAPI document (api/openapi.py) is
generated from them, so the two cannot drift.

Conventions (as Stripe's): times are Unix seconds (``null``: never, or not yet); a request
body with a field the model does not know is refused, naming the field; ids are the ids
tollway shows everywhere else (a key id is 16 hex digits, never the key).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

# Stripe's bounds on metadata: 50 pairs, keys up to 40 characters, values up to 500.
METADATA_PAIRS = 50
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=40)]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=METADATA_PAIRS)]
# The operator's own ids: a user id, an email, a UUID.
ExternalId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@+=/-]{1,128}$")]
StripeId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,255}$"), Field(examples=["cus_123"])
]
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
Name = Annotated[str, StringConstraints(max_length=100)]
Tier = Annotated[
    str, StringConstraints(min_length=1, max_length=64), Field(examples=["free", "pro"])
]
Limit = Annotated[int, Field(ge=1, le=100)]
Epoch = Annotated[int, Field(ge=0, le=4_102_444_800)]  # to 2100
Feature = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class Body(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class Answer(BaseModel):
    """A response body."""


# Errors.


class ErrorDetail(Answer):
    code: str = Field(
        description="stable: invalid_request, unauthorized, forbidden, not_found, conflict, "
        "idempotency_mismatch, idempotency_unreadable, rate_limited, payload_too_large, "
        "request_timeout, unavailable"
    )
    message: str
    field: str | None = Field(None, description="the request field at fault, when one is")


class Error(Answer):
    error: ErrorDetail


# Keys.


class CreateKey(Body):
    tier: Tier | None = Field(None, description="required unless subscription is given")
    customer: StripeId | None = Field(
        None, description="the account's customer; a new local customer when left out"
    )
    subscription: StripeId | None = Field(
        None, description="bind the key to a subscription the webhook service has seen"
    )
    name: Name = ""
    external_id: ExternalId | None = Field(None, description="your own id for the key's user")
    metadata: Metadata = Field(default_factory=dict)
    expires_at: Epoch | None = Field(None, description="when the key stops working (401)")
    test: bool = Field(False, description="issue a tw_test_ key")


class UpdateKey(Body):
    name: Name | None = None
    metadata: Metadata | None = Field(None, description="replaces the key's metadata whole")
    expires_at: Epoch | None = Field(None, description="0: never")


class RotateKey(Body):
    overlap_s: Annotated[int, Field(ge=0, le=30 * 86_400)] = Field(
        86_400, description="how long the old key keeps working (0: revoked at once)"
    )


KeyStateName = Literal["active", "past_due", "pending", "suspended", "revoked", "expired"]


class Key(Answer):
    id: str
    object: Literal["key"] = "key"
    prefix: str = Field(description="the key's first characters, to tell keys apart")
    state: KeyStateName = Field(description="what a request with the key gets now")
    tier: str
    account: str
    customer: str
    subscription: str | None
    mode: Literal["live", "test"]
    name: str
    external_id: str | None
    metadata: dict[str, str]
    created: int
    last_used: int | None
    expires_at: int | None
    successor: str | None = Field(description="the key this key was rotated to")


class CreatedKey(Key):
    key: str = Field(description="the key itself: shown this once, never again")


class KeyList(Answer):
    object: Literal["list"] = "list"
    data: list[Key]
    has_more: bool


class VerifyKey(Body):
    key: Annotated[str, StringConstraints(max_length=200)] = Field(
        description="the key a caller presented (tw_live_… or tw_test_…)"
    )
    cost: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        1, description="requests this call counts as (a route's tollway_cost)"
    )
    feature: Feature | None = Field(None, description="the feature the call needs")


class Verification(Answer):
    object: Literal["verification"] = "verification"
    valid: bool = Field(description="whether the call may go ahead (it was counted if so)")
    code: str = Field(
        description="ok, or the reason Envoy's denial would carry: missing_api_key, "
        "invalid_api_key, key_revoked, payment_required, feature_not_in_plan, quota_exceeded, "
        "daily_limit_exceeded, hourly_limit_exceeded, concurrency_exceeded, credits_exhausted, "
        "rate_limited, plan_unavailable, store_unavailable, overloaded"
    )
    message: str
    key_id: str | None
    account: str | None
    customer: str | None
    tier: str | None
    remaining: int | None = Field(description="RateLimit-Remaining, as Envoy's answer has it")
    reset: int | None = Field(description="RateLimit-Reset, seconds")
    external_id: str | None
    credits: int | None = Field(
        None, description="a prepaid account's balance after this call (null for other tiers)"
    )


# Accounts.


class Account(Answer):
    id: str
    object: Literal["account"] = "account"
    customer: str
    subscription: str | None
    tier: str
    status: str
    held: bool = Field(description="an operator's hold: every key of the account gets 402")
    period_start: int | None
    period_end: int | None
    quota_used: int = Field(description="requests counted this period")
    day_used: int = Field(description="requests counted this UTC day (per_day caps it)")
    hour_used: int = Field(description="requests counted this UTC hour (per_hour caps it)")
    in_flight: int = Field(description="requests in flight now (max_concurrent caps it)")
    overrides: dict[str, str] = Field(description="the account's own limits, over its tier's")


class AccountList(Answer):
    object: Literal["list"] = "list"
    data: list[Account]
    has_more: bool


class SetTier(Body):
    tier: Tier


class SetLimits(Body):
    requests_per_second: Annotated[float, Field(gt=0)] | None = None
    burst: Annotated[int, Field(ge=1)] | None = None
    monthly_quota: Annotated[int, Field(ge=0)] | None = None
    features: Annotated[list[Feature], Field(max_length=100)] | None = None
    per_day: Annotated[int, Field(ge=0)] | None = None
    per_hour: Annotated[int, Field(ge=0)] | None = None
    max_concurrent: Annotated[int, Field(ge=0)] | None = None
    replace: bool = Field(False, description="clear the account's earlier limits first")


# Prepaid credits.


class MoveCredits(Body):
    credits: Annotated[int, Field(ge=-(10**12), le=10**12)] = Field(
        description="credits to add (negative: to take back; a grant adds only)"
    )
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="why: kept in the ledger and the audit log"
    )
    kind: Literal["grant", "adjustment"] = Field(
        "adjustment", description="a grant (a gift: > 0) or an adjustment (either sign)"
    )


class CreditEntry(Answer):
    at: int
    kind: str = Field(
        description="purchase, refund, grant, adjustment, requests, units or returned"
    )
    credits: int = Field(description="what it did to the balance, signed")
    ref: str = Field(description="the Checkout session, payment or request it was applied under")
    reason: str
    actor: str
    balance: int | None = Field(description="the balance right after it (null for an hour's usage)")


class Credits(Answer):
    account: str
    balance: int
    ledger_sum: int = Field(description="the sum of the whole ledger: the balance, always")
    ledger: list[CreditEntry] = Field(description="newest first, at most 100")


# Usage.


class UsageWindow(Answer):
    meter: str
    window_start: int
    counting: int = Field(description="counted, not yet moved on to billing")
    pending: int = Field(description="moved on, not yet confirmed sent to Stripe")
    sent: int = Field(description="sent to Stripe")


class UsageDay(Answer):
    meter: str
    day: int = Field(description="the UTC day's start")
    units: int = Field(description="counted that day, whatever its stage")


class KeyUsage(Answer):
    key_id: str
    account: str
    this_period: int = Field(description="requests the key made this billing period")


class UsagePeriod(Answer):
    account: str
    meter: str = Field(description="the account's tier's meter (requests, or reported amounts)")
    period: Literal["this", "last"]
    start: int = Field(description="the billing period's start (its end is the next's start)")
    end: int
    units: int = Field(description="counted in the period so far, whatever its stage")


class Usage(Answer):
    object: Literal["usage"] = "usage"
    customer: str
    account: str | None = Field(description="the account asked for; null: all the customer's")
    windows: list[UsageWindow] = Field(
        description="the customer's (Stripe bills a customer: its accounts share them)"
    )
    days: list[UsageDay] = Field(
        description="per meter and UTC day, the last 62 days to today (the portal's chart)"
    )
    periods: list[UsagePeriod] = Field(
        description="per account and meter, this billing period and the last"
    )
    keys: list[KeyUsage]
    carried: int = Field(description="refunds waiting to come off a later window")


# Audit.


class AuditEntry(Answer):
    id: str = Field(description="ordered: pass the last one as starting_after for more")
    at: int
    actor: str = Field(description="cli, token:<id>, customer:<cus_…>, stripe:<evt_…>")
    action: str
    target: str = Field(description="key:<id>, account:<id> or token:<id>")
    changes: dict[str, object]


class AuditList(Answer):
    object: Literal["list"] = "list"
    data: list[AuditEntry]
    has_more: bool


# Query strings.


class Query(BaseModel):
    """A query string: unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid")


class KeyQuery(Query):
    account: StripeId | None = Field(None, description="only this account's keys")
    customer: StripeId | None = Field(None, description="only this customer's keys")
    external_id: ExternalId | None = Field(None, description="only the keys with this id")
    limit: Limit = 10
    starting_after: KeyId | None = Field(None, description="the last key id of the page before")


class AccountQuery(Query):
    limit: Limit = 10
    starting_after: StripeId | None = None


class UsageQuery(Query):
    customer: StripeId | None = Field(None, description="a customer, all its accounts")
    account: StripeId | None = Field(None, description="one account (give this or customer)")


class AuditQuery(Query):
    target: Annotated[str, StringConstraints(max_length=300)] | None = None
    actor: Annotated[str, StringConstraints(max_length=300)] | None = None
    since: Epoch | None = None
    until: Epoch | None = None
    limit: Limit = 10
    starting_after: (
        Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$")] | None
    ) = None

    @field_validator("starting_after")
    @classmethod
    def an_entry_id(cls, value: str | None) -> str | None:
        """A stream entry id is two 64-bit numbers."""
        if value is not None and any(int(part) >= 2**64 for part in value.split("-")):
            raise ValueError("not an audit entry id")
        return value
