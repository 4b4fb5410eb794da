"""`tollway stripe sync`: make the Stripe account match the tier table, idempotently.

For every paid tier (``price_amount`` set) the account gets:
- a Product with id ``tollway_<tier>`` (Stripe accepts our own product ids, so it is found
  again by id, never duplicated);
- a recurring flat Price with lookup key ``stripe_prices[0]``;
- with ``overage_unit_amount``, a metered Price with lookup key ``<that key>_usage`` on the
  Billing Meter whose ``event_name`` is the tier's ``meter_event``. It is graduated:
  ``monthly_quota`` requests at 0, then ``overage_unit_amount`` each, so the hybrid plan (a
  fee with included requests) comes out right on the invoice;
- with ``usage_unit_amount``, a metered Price with lookup key ``<that key>_<usage_meter>`` on
  the Billing Meter whose ``event_name`` is the tier's ``usage_meter``: the amounts the
  upstream reports (tokens, rows), ``usage_unit_amount`` each;
- those Billing Meters, found by ``event_name``.

For every prepaid tier with ``credit_packs``: the Product, and a one-time Price per pack with
lookup key ``tollway_<tier>_<pack>`` (what the portal's Buy button's Checkout charges).

Prices cannot be edited in Stripe. A changed amount, currency or interval creates a new Price
and moves the lookup key to it (``transfer_lookup_key``), so the webhook's mapping follows.
``plan()`` only reads; ``apply()`` carries out a plan. The CLI prints the plan, then applies it
unless ``--dry-run`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tollway.credits import pack_lookup_key
from tollway.money import money
from tollway.tier_readers import CreditPack
from tollway.tiers import Tier, TierTable

CREATE, UPDATE, REPLACE, UNCHANGED = "create", "update", "replace", "unchanged"


@dataclass
class Change:
    action: str  # create | update | replace | unchanged
    kind: str  # product | price | meter
    key: str  # product id, price lookup key, or meter event name
    detail: str
    params: dict[str, Any] = field(default_factory=dict)  # what apply() sends
    meter_event: str = ""  # a metered price whose meter this run creates: apply() fills its id

    def line(self) -> str:
        return f"{self.action:<9} {self.kind:<7} {self.key}  {self.detail}"


def product_id(tier: Tier) -> str:
    return f"tollway_{tier.name}"


def flat_price(tier: Tier) -> dict[str, Any]:
    return {
        "currency": tier.currency,
        "unit_amount": tier.price_amount,
        "recurring": {"interval": tier.interval},
        "lookup_key": tier.stripe_prices[0],
        "product": product_id(tier),
        "metadata": {"tollway_tier": tier.name},
    }


def usage_price(tier: Tier, meter_id: str) -> dict[str, Any]:
    tiers: list[dict[str, Any]] = []
    if tier.monthly_quota > 0:
        tiers.append({"up_to": tier.monthly_quota, "unit_amount": 0})
    tiers.append({"up_to": "inf", "unit_amount_decimal": tier.overage_unit_amount})
    return {
        "currency": tier.currency,
        "billing_scheme": "tiered",
        "tiers_mode": "graduated",
        "tiers": tiers,
        "lookup_key": f"{tier.stripe_prices[0]}_usage",
        "recurring": {"interval": tier.interval, "usage_type": "metered", "meter": meter_id},
        "product": product_id(tier),
        "metadata": {"tollway_tier": tier.name},
    }


def amount_price(tier: Tier, meter_id: str) -> dict[str, Any]:
    """Per unit of the tier's usage_meter: what the upstream reported, at usage_unit_amount."""
    return {
        "currency": tier.currency,
        "unit_amount_decimal": tier.usage_unit_amount,
        "lookup_key": f"{tier.stripe_prices[0]}_{tier.usage_meter}",
        "recurring": {"interval": tier.interval, "usage_type": "metered", "meter": meter_id},
        "product": product_id(tier),
        "metadata": {"tollway_tier": tier.name},
    }


def pack_price(tier: Tier, pack: CreditPack) -> dict[str, Any]:
    """A credit pack: a one-time Price."""
    return {
        "currency": tier.currency,
        "unit_amount": pack.price_amount,
        "lookup_key": pack_lookup_key(tier.name, pack),
        "product": product_id(tier),
        "metadata": {"tollway_tier": tier.name, "tollway_pack": pack.name},
    }


def _same_price(want: dict[str, Any], have: Any) -> bool:
    """Does the existing Price ``have`` charge what ``want`` describes?"""
    h = have.to_dict() if hasattr(have, "to_dict") else dict(have)
    rec = h.get("recurring") or {}
    same = (
        h.get("currency") == want["currency"]
        and h.get("product") == want["product"]
        and rec.get("interval") == want.get("recurring", {}).get("interval")
    )
    if "unit_amount_decimal" in want:
        return bool(
            same
            and rec.get("usage_type") == "metered"
            and rec.get("meter") == want["recurring"]["meter"]
            and str(h.get("unit_amount_decimal")) == str(want["unit_amount_decimal"])
        )
    if "tiers" not in want:
        return bool(same and h.get("unit_amount") == want["unit_amount"])
    have_tiers = [
        (t.get("up_to"), str(t.get("unit_amount_decimal") or t.get("unit_amount") or 0))
        for t in (h.get("tiers") or [])
    ]
    want_tiers = [
        (
            t["up_to"] if t["up_to"] != "inf" else None,
            str(t.get("unit_amount_decimal", t.get("unit_amount", 0))),
        )
        for t in want["tiers"]
    ]
    return bool(
        same
        and rec.get("usage_type") == "metered"
        and rec.get("meter") == want["recurring"]["meter"]
        and h.get("tiers_mode") == "graduated"
        and have_tiers == want_tiers
    )


async def plan(client: Any, table: TierTable) -> list[Change]:
    """What apply() would change, read from the account; changes nothing."""
    paid = [t for t in table if t.price_amount is not None or t.credit_packs]
    changes: list[Change] = []
    meters = {
        m.event_name: m.id
        for m in (await client.v1.billing.meters.list_async({"limit": 100})).data
        if m.status == "active"
    }
    wanted_meters = {t.meter_event for t in paid if t.overage_unit_amount is not None}
    wanted_meters |= {t.usage_meter for t in paid if t.usage_unit_amount is not None}
    for event_name in sorted(wanted_meters):
        if event_name in meters:
            changes.append(Change(UNCHANGED, "meter", event_name, meters[event_name]))
        else:
            params = {
                "event_name": event_name,
                "display_name": event_name,
                "default_aggregation": {"formula": "sum"},
            }
            changes.append(Change(CREATE, "meter", event_name, "sum of meter event values", params))
    for tier in paid:
        pid = product_id(tier)
        name = f"tollway {tier.name}"
        try:
            product = await client.v1.products.retrieve_async(pid)
        except Exception as exc:  # stripe.InvalidRequestError: resource_missing
            if getattr(exc, "code", None) != "resource_missing":
                raise
            product = None
        if product is None:
            changes.append(
                Change(
                    CREATE,
                    "product",
                    pid,
                    name,
                    {"id": pid, "name": name, "metadata": {"tollway_tier": tier.name}},
                )
            )
        elif product.name != name:
            changes.append(
                Change(UPDATE, "product", pid, f"name {product.name!r} -> {name!r}", {"name": name})
            )
        else:
            changes.append(Change(UNCHANGED, "product", pid, name))
        wanted = [flat_price(tier)] if tier.price_amount is not None else []
        wanted += [pack_price(tier, pack) for pack in tier.credit_packs]
        if tier.overage_unit_amount is not None:
            wanted.append(
                usage_price(tier, meters.get(tier.meter_event, ""))  # "": made by this run
            )
        if tier.usage_unit_amount is not None:
            wanted.append(amount_price(tier, meters.get(tier.usage_meter, "")))
        for want in wanted:
            key = want["lookup_key"]
            found = (await client.v1.prices.list_async({"lookup_keys": [key], "active": True})).data
            if "recurring" not in want:
                pack = tier.pack(want["metadata"]["tollway_pack"])
                credits = pack.credits if pack else 0
                what = f"{money(want['unit_amount'], tier.currency)} for {credits:,} credits"
            elif "unit_amount" in want:
                what = f"{money(want['unit_amount'], tier.currency)}/{tier.interval}"
            elif "unit_amount_decimal" in want:
                each = money(tier.usage_unit_amount or 0, tier.currency)
                what = f"{each} per {tier.usage_meter} unit"
            else:
                each = money(tier.overage_unit_amount or 0, tier.currency)
                what = f"{tier.monthly_quota:,} requests included, then {each} each"
            meter_of = tier.usage_meter if "unit_amount_decimal" in want else tier.meter_event
            pending = meter_of if want.get("recurring", {}).get("meter") == "" else ""
            if not found:
                changes.append(Change(CREATE, "price", key, what, want, pending))
            elif _same_price(want, found[0]):
                changes.append(Change(UNCHANGED, "price", key, f"{found[0].id}: {what}"))
            else:
                changes.append(
                    Change(
                        REPLACE,
                        "price",
                        key,
                        f"{found[0].id} -> a new price: {what}",
                        {**want, "transfer_lookup_key": True},
                        pending,
                    )
                )
    return changes


async def apply(client: Any, changes: list[Change]) -> int:
    """Carry out ``changes`` in order (meters, then each product before its prices); returns
    how many calls changed something. A metered price whose meter is made in the same run gets
    that meter's new id."""
    created: dict[str, str] = {}  # meter event name -> id of the meter made here
    done = 0
    for c in changes:
        if c.action == UNCHANGED:
            continue
        if c.kind == "meter":
            meter = await client.v1.billing.meters.create_async(c.params)
            created[c.key] = meter.id
        elif c.kind == "product" and c.action == CREATE:
            await client.v1.products.create_async(c.params)
        elif c.kind == "product":
            await client.v1.products.update_async(c.key, c.params)
        else:
            params = dict(c.params)
            if c.meter_event:
                params["recurring"] = {**params["recurring"], "meter": created[c.meter_event]}
            await client.v1.prices.create_async(params)
        done += 1
    return done
