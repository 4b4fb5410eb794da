"""Give the Stripe stand-in a product and a monthly price for every lookup key in the tier
table, a one-time price for every credit pack (at its own amount), and a Billing Meter for every meter_event and usage_meter, so that `POST /checkout` and metering work
in the local stack, for any tier table (``tollway stripe sync`` does the full job, with the
tier's own amounts, for tiers that set price_amount, against real Stripe too)."""

from __future__ import annotations

from typing import Any

from tollway.credits import pack_lookup_key
from tollway.settings import StripeSettings
from tollway.stripe_api import Stripe
from tollway.tiers import TierTable


async def _price(stripe: Any, tier: str, lookup: str, price: dict[str, Any]) -> str:
    """The id of the price with ``lookup`` as its lookup key, made (on a product of its own,
    with ``price``'s amount and kind) if there is none."""
    found = await stripe.v1.prices.list_async({"lookup_keys": [lookup]})
    if found.data:
        return str(found.data[0].id)
    product = await stripe.v1.products.create_async({"name": f"tollway {tier}"})
    made = await stripe.v1.prices.create_async(
        {**price, "product": product.id, "lookup_key": lookup}
    )
    return str(made.id)


async def seed_prices(api_base: str, table: TierTable) -> dict[str, str]:
    """Create the missing prices; returns lookup key -> price id."""
    stripe = Stripe(StripeSettings(stripe_api_base=api_base))
    out: dict[str, str] = {}
    monthly = {"currency": "usd", "unit_amount": 1000, "recurring": {"interval": "month"}}
    try:
        for tier in table:
            for lookup in tier.stripe_prices:
                if not lookup.startswith("price_"):
                    out[lookup] = await _price(stripe, tier.name, lookup, monthly)
            for pack in tier.credit_packs:
                lookup = pack_lookup_key(tier.name, pack)
                one_time = {"currency": tier.currency, "unit_amount": pack.price_amount}
                out[lookup] = await _price(stripe, tier.name, lookup, one_time)
        meters = await stripe.v1.billing.meters.list_async()
        have = {m.event_name for m in meters.data}
        wanted = {t.meter_event for t in table} | {t.usage_meter for t in table if t.usage_meter}
        for event_name in sorted(wanted - have):
            await stripe.v1.billing.meters.create_async(
                {
                    "event_name": event_name,
                    "display_name": event_name,
                    "default_aggregation": {"formula": "sum"},
                }
            )
    finally:
        await stripe.aclose()
    return out
