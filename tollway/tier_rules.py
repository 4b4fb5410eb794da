"""The rules between a tier's fields (each field alone is read by tollway/tier_readers.py):
each takes the tier's values, all read, and the raw table, and names the field at fault and
the problem, or None. (Choices compare by their TOML value: the enums live in tollway/tiers.py,
which imports this module.)"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# A rule between fields: the values of a tier whose fields all read -> (field, problem) or None.
Rule = Callable[[Mapping[str, Any], Mapping[str, object]], tuple[str, str] | None]


def _overage_needs_quota(v: Mapping[str, Any], raw: Mapping[str, object]) -> tuple[str, str] | None:
    if v["report"] == "overage" and v["monthly_quota"] == 0:
        return "report", '"overage" needs a monthly_quota > 0 to report usage past'
    return None


def _lease_size(v: Mapping[str, Any], raw: Mapping[str, object]) -> tuple[str, str] | None:
    if "lease_tokens" not in raw:
        return None
    if v["limiter"] != "lease":
        return "lease_tokens", 'only applies with limiter = "lease"'
    if v["lease_tokens"] > v["burst"]:
        return "lease_tokens", f"must be <= burst ({v['burst']}), got {v['lease_tokens']}"
    return None


def _concurrency_is_exact(
    v: Mapping[str, Any], raw: Mapping[str, object]
) -> tuple[str, str] | None:
    if v["max_concurrent"] and v["limiter"] == "lease":
        return "max_concurrent", (
            'needs limiter = "exact": every request takes its slot in Redis at its check'
        )
    return None


def _free_has_no_price(v: Mapping[str, Any], raw: Mapping[str, object]) -> tuple[str, str] | None:
    if v["free_signup"] and (v["stripe_prices"] or v["price_amount"]):
        return "free_signup", (
            "a tier anyone signs up for without Stripe has no stripe_prices or price_amount"
        )
    return None


def _price_has_lookup_key(
    v: Mapping[str, Any], raw: Mapping[str, object]
) -> tuple[str, str] | None:
    prices = v["stripe_prices"]
    if v["price_amount"] is not None and (not prices or prices[0].startswith("price_")):
        return "stripe_prices", (
            "a tier with price_amount needs a lookup key first (not a "
            "price_ id): `tollway stripe sync` gives that key to its Price"
        )
    return None


def _overage_needs_price(v: Mapping[str, Any], raw: Mapping[str, object]) -> tuple[str, str] | None:
    if v["overage_unit_amount"] is not None and v["price_amount"] is None:
        return "overage_unit_amount", "needs price_amount (0 for usage alone)"
    return None


def _usage_meter_apart(v: Mapping[str, Any], raw: Mapping[str, object]) -> tuple[str, str] | None:
    if v["usage_meter"] and v["usage_meter"] == v["meter_event"]:
        return "usage_meter", "must differ from meter_event (requests and amounts are two meters)"
    return None


def _usage_price_needs(v: Mapping[str, Any], raw: Mapping[str, object]) -> tuple[str, str] | None:
    if v["usage_unit_amount"] is None:
        return None
    if not v["usage_meter"]:
        return "usage_unit_amount", "needs usage_meter (the meter it prices)"
    if v["price_amount"] is None:
        return "usage_unit_amount", "needs price_amount (0 for usage alone)"
    return None


_PREPAID_ONLY = (
    "credits_per_request",
    "credits_per_unit",
    "credit_packs",
    "low_credits",
    "auto_recharge",
    "credits_expire_days",
)


def _prepaid(v: Mapping[str, Any], raw: Mapping[str, object]) -> tuple[str, str] | None:
    """A prepaid tier is paid for by its credits alone, each request's taken in Redis."""
    if not v["prepaid"]:
        for name in _PREPAID_ONLY:
            if name in raw:
                return name, "only applies with prepaid = true"
        return None
    for name in ("stripe_prices", "price_amount", "usage_meter"):
        if v[name] not in (None, (), ""):
            return "prepaid", f"a prepaid tier is paid by its credits: it has no {name}"
    if v["over_quota"] == "bill" and v["monthly_quota"] > 0:
        return "over_quota", 'a prepaid tier bills nothing past its quota: use "block"'
    return None


RULES: tuple[Rule, ...] = (
    _prepaid,
    _overage_needs_quota,
    _lease_size,
    _concurrency_is_exact,
    _free_has_no_price,
    _price_has_lookup_key,
    _overage_needs_price,
    _usage_meter_apart,
    _usage_price_needs,
)
