"""Who an email address signs in as: Stripe's customers with that address that hold keys."""

from __future__ import annotations

from typing import Any

from portal.app import Customers
from tollway.store import KeyStore


def customers_with_keys(stripe: Any | None, keys: KeyStore) -> Customers:
    async def customers(address: str) -> list[str]:
        if stripe is None:  # Stripe not configured: nobody can sign in
            return []
        found = await stripe.v1.customers.list_async({"email": address, "limit": 10})
        return [c.id for c in found.data if await keys.owned(c.id)]

    return customers
