"""A prepaid account's auto-recharge: what the customer chose and what happened, in one hash
in the account's slot (``schema.recharge``).

- ``customer``, ``payment_method``, ``last4``: the card on file, saved at a purchase through
  Checkout on a tier with ``auto_recharge`` (webhook/purchases.py);
- ``enabled`` ("1" or ""), ``below`` (credits), ``pack``: the customer's choice (the portal);
- ``status`` ("charged", "declined"), ``at``, ``error``, ``payment_intent``: the last attempt;
- ``at:<top-up>``: one field per crossing charged for (portal/recharger.py sets it first,
  HSETNX, so a crossing is charged once whatever runs at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollway import schema
from tollway.errors import InvalidInput
from tollway.key_store import text
from tollway.tier_readers import MAX_CREDITS


@dataclass(frozen=True)
class Recharge:
    customer: str = ""
    payment_method: str = ""
    last4: str = ""
    enabled: bool = False
    below: int = 0
    pack: str = ""
    status: str = ""
    at: int = 0
    error: str = ""

    @property
    def card_on_file(self) -> bool:
        return bool(self.customer and self.payment_method)


async def read(redis: Any, account: str) -> Recharge:
    raw = {text(k): text(v) for k, v in (await redis.hgetall(schema.recharge(account))).items()}
    return Recharge(
        raw.get("customer", ""),
        raw.get("payment_method", ""),
        raw.get("last4", ""),
        raw.get("enabled") == "1",
        int(raw.get("below") or 0),
        raw.get("pack", ""),
        raw.get("status", ""),
        int(raw.get("at") or 0),
        raw.get("error", ""),
    )


async def save_card(redis: Any, account: str, customer: str, method: str, last4: str) -> None:
    """The card a purchase saved: the one auto-recharge charges from now on."""
    mapping = {"customer": customer, "payment_method": method, "last4": last4}
    await redis.hset(schema.recharge(account), mapping=mapping)


async def choose(redis: Any, account: str, enabled: bool, below: int, pack: str) -> None:
    """The customer's choice. Raises InvalidInput for a mark out of range, or turning it on
    with no card on file."""
    if not 1 <= below <= MAX_CREDITS:
        raise InvalidInput(f"the mark must be from 1 to {MAX_CREDITS:,} credits", field="below")
    if enabled and not (await read(redis, account)).card_on_file:
        raise InvalidInput(
            "buy a pack first: its card is the one auto-recharge charges", field="enabled"
        )
    mapping = {"enabled": "1" if enabled else "", "below": str(below), "pack": pack}
    await redis.hset(schema.recharge(account), mapping=mapping)
