"""The pricing page's rows, from the tier table. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tollway.money import money as _money
from tollway.tiers import Tier, TierTable


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    price: str  # "$29.00 / month", or "Free"
    paid: bool
    signup: bool  # free, signed up for with an email address alone
    rate: str  # "20 requests/s, bursts of 40"
    quota: str  # "100,000 requests a month", or "Unlimited requests"
    caps: str  # "Up to 1,000 requests a day and 100 an hour", or ""
    overage: str  # "then $0.0005 a request", or ""
    usage: str  # "$0.00002 per tokens unit", or ""
    features: tuple[str, ...]
    credits: str = ""  # prepaid: "1 credit a request, 1 per tokens unit reported"
    packs: tuple[str, ...] = ()  # prepaid: "1,000 credits for $5.00", cheapest first


def spends(tier: Tier) -> str:
    """What a prepaid tier's requests and reported units spend, as the pages say it."""
    per = tier.credits_per_request
    text = f"{per:,} credit{'s' if per != 1 else ''} a request"
    if tier.credits_per_unit:
        text += f", {tier.credits_per_unit:,} per unit of usage reported"
    return text


def pack_label(tier: Tier, credits: int, price_amount: int) -> str:
    return f"{credits:,} credits for {_money(Decimal(price_amount), tier.currency)}"


def plan(tier: Tier) -> Plan:
    paid = tier.price_amount is not None and tier.price_amount > 0
    price = (
        f"{_money(Decimal(tier.price_amount or 0), tier.currency)} / {tier.interval}"
        if paid
        else "Prepaid credits"
        if tier.prepaid
        else "Free"
    )
    overage = (
        f"then {_money(Decimal(tier.overage_unit_amount), tier.currency)} a request"
        if tier.overage_unit_amount is not None
        else ""
    )
    usage = (
        f"{_money(Decimal(tier.usage_unit_amount), tier.currency)} per {tier.usage_meter} unit"
        if tier.usage_unit_amount is not None
        else ""
    )
    return Plan(
        name=tier.name,
        description=tier.description,
        price=price,
        paid=paid,
        signup=tier.free_signup,
        rate=f"{tier.requests_per_second:g} requests/s, bursts of {tier.burst:,}",
        quota=(
            f"{tier.monthly_quota:,} requests a {tier.interval}"
            if tier.monthly_quota
            else "As many requests as your credits cover"
            if tier.prepaid
            else "Unlimited requests"
        ),
        caps=caps(tier.per_day, tier.per_hour, tier.max_concurrent),
        overage=overage,
        usage=usage,
        features=tuple(sorted(tier.features)),
        credits=spends(tier) if tier.prepaid else "",
        packs=tuple(
            pack_label(tier, p.credits, p.price_amount)
            for p in sorted(tier.credit_packs, key=lambda p: p.price_amount)
        ),
    )


def caps(per_day: int, per_hour: int, max_concurrent: int = 0) -> str:
    """A tier's day, hour and concurrency caps as the pricing page says them ("" for none):
    "Up to 1,000 requests a day and 100 an hour, 2 at a time"."""
    parts = [f"{n:,} {w}" for n, w in ((per_day, "a day"), (per_hour, "an hour")) if n]
    at_once = f"{max_concurrent:,} at a time" if max_concurrent else ""
    if not parts:
        return f"Up to {max_concurrent:,} requests at a time" if at_once else ""
    first, *rest = parts
    count, window = first.split(" ", 1)
    text = f"Up to {count} requests {window}" + "".join(f" and {p}" for p in rest)
    return f"{text}, {at_once}" if at_once else text


def plans(table: TierTable) -> list[Plan]:
    """The tiers a customer can take up themselves, paid ones and those open for free
    sign-up, cheapest first. Others (internal, or by arrangement) stay off the page."""
    open_ = [t for t in table if t.free_signup or (t.price_amount or 0) > 0]
    return [plan(t) for t in sorted(open_, key=lambda t: (t.price_amount or 0, t.name))]
