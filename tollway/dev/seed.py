"""Give the Stripe stand-in a product and a monthly price for every lookup key in the tier
table, so that `POST /checkout` works in the local stack. (``tollway stripe sync``, planned,
will do this properly against real Stripe too.)"""

from __future__ import annotations

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
    finally:
        await stripe.aclose()
    return out
