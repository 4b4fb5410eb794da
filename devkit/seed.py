"""Give the Stripe stand-in a product and a monthly price for every lookup key in the tier
table, a one-time price for every credit pack (at its own amount), and a Billing Meter for every meter_event and usage_meter, so that `POST /checkout` and metering work
in the local stack, for any tier table (``tollway stripe sync`` does the full job, with the
tier's own amounts, for tiers that set price_amount, against real Stripe too)."""

from __future__ import annotations

from tollway.credits import pack_lookup_key
from tollway.settings import StripeSettings
from tollway.stripe_api import Stripe
from tollway.tiers import TierTable


async def seed_prices(api_base: str, table: TierTable) -> dict[str, str]:
    """Create the missing prices; returns lookup key -> price id."""
    stripe = Stripe(StripeSettings(stripe_api_base=api_base))
    out: dict[str, str] = {}
    try:
        for tier in table:
            for lookup in tier.stripe_prices:
                if lookup.startswith("price_"):
                    continue
                found = await stripe.v1.prices.list_async({"lookup_keys": [lookup]})
                if found.data:
                    out[lookup] = found.data[0].id
                    continue
                product = await stripe.v1.products.create_async({"name": f"tollway {tier.name}"})
                price = await stripe.v1.prices.create_async(
                    {
                        "product": product.id,
                        "currency": "usd",
                        "unit_amount": 1000,
                        "recurring": {"interval": "month"},
                        "lookup_key": lookup,
                    }
                )
                out[lookup] = price.id
        for tier in table:
            for pack in tier.credit_packs:
                lookup = pack_lookup_key(tier.name, pack)
                found = await stripe.v1.prices.list_async({"lookup_keys": [lookup]})
                if not found.data:
                    product = await stripe.v1.products.create_async(
                        {"name": f"tollway {tier.name}"}
                    )
                    found_price = await stripe.v1.prices.create_async(
                        {
                            "product": product.id,
                            "currency": tier.currency,
                            "unit_amount": pack.price_amount,
                            "lookup_key": lookup,
                        }
                    )
                    out[lookup] = found_price.id
                else:
                    out[lookup] = found.data[0].id
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
