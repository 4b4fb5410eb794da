"""Who an email address signs in as (its free customer, and Stripe's customers with that
address, that hold keys), and what a signed-in customer may see: their accounts, found
through their own keys only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from portal.signup import FreeSignups
from tollway.accounts import Accounts, AccountView
from tollway.key_store import KeyStore

Customers = Callable[[str], Awaitable[list[str]]]  # an address -> customers with keys
AccountsOf = Callable[[str], Awaitable[list[AccountView]]]  # a customer -> their accounts


def customers_with_keys(stripe: Any | None, keys: KeyStore, signups: FreeSignups) -> Customers:
    async def customers(address: str) -> list[str]:
        found = []
        free = await signups.customer_of(address)
        if free is not None:
            found.append(free)
        if stripe is not None:  # without Stripe, only free customers can sign in
            listed = await stripe.v1.customers.list_async({"email": address, "limit": 10})
            found += [c.id for c in listed.data]
        return [c for c in found if await keys.owned(c)]

    return customers


def email_of(stripe: Any | None, signups: FreeSignups) -> Callable[[str], Awaitable[str | None]]:
    """A customer's address, for their usage alerts: a free customer's own, or Stripe's."""

    async def of(customer: str) -> str | None:
        address = await signups.email_of(customer)
        if address is None and stripe is not None and not customer.startswith("free_"):
            found = await stripe.v1.customers.retrieve_async(customer)
            address = getattr(found, "email", None) or None
        return address

    return of


def accounts_of(keys: KeyStore) -> AccountsOf:
    accounts = Accounts(keys)

    async def of(customer: str) -> list[AccountView]:
        """Every account whose keys were issued for ``customer`` (a customer's set also lists
        its subscriptions' keys): nothing reached by an id the client sent."""
        ids = {r.account for r in await keys.records_of(customer) if r.customer == customer}
        return [await accounts.show(a) for a in sorted(ids)]

    return of
