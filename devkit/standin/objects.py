"""The stand-in's world: customers, products, prices, checkout sessions, subscriptions and
invoices in memory, and the events Stripe would send when they change.

Objects are shaped like API version 2026-10-28 (basil and later): subscription periods on
the items, an invoice's subscription under ``parent.subscription_details``.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable
from typing import Any

from tollway.stripe_api import API_VERSION

PERIOD_S = 30 * 24 * 3600
_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(24))


class NotFound(LookupError):
    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"No such {kind}: '{object_id}'")
        self.kind = kind


class World:
    def __init__(self, base_url: str, now: Callable[[], float] = time.time) -> None:
        self.base_url = base_url
        self.now = now
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            k: {}
            for k in (
                "customer",
                "product",
                "price",
                "checkout.session",
                "subscription",
                "invoice",
                "billing.meter",
                "billing_portal.session",
                "payment_intent",
                "charge",
                "refund",
                "payment_method",
            )
        }
        self.meter_events: list[dict[str, Any]] = []  # accepted, de-duplicated by identifier
        self.identifiers: set[str] = set()
        self.duplicate_refusals = 0  # meter events refused because the identifier was used
        self.events: list[dict[str, Any]] = []
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    # -- storage ---------------------------------------------------------------------------
    def get(self, kind: str, object_id: str) -> dict[str, Any]:
        try:
            return self.objects[kind][object_id]
        except KeyError:
            raise NotFound(kind.split(".")[-1], object_id) from None

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[obj["object"]][obj["id"]] = obj
        return obj

    def emit(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        event = {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(self.now()),
            "data": {"object": _copy(obj)},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }
        self.events.append(event)
        for listener in self.listeners:
            listener(event)
        return event

    # -- creation --------------------------------------------------------------------------
    def customer(
        self, email: str | None = None, metadata: dict[str, str] | None = None
    ) -> dict[str, Any]:
        obj = self.put(
            {
                "id": new_id("cus_"),
                "object": "customer",
                "email": email,
                "metadata": metadata or {},
                "created": int(self.now()),
                "deleted": False,
            }
        )
        self.emit("customer.created", obj)
        return obj

    def product(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.put(
            {
                "id": params.get("id") or new_id("prod_"),
                "object": "product",
                "name": params["name"],
                "active": params.get("active", "true") != "false",
                "metadata": params.get("metadata", {}),
                "created": int(self.now()),
            }
        )

    def price(self, params: dict[str, Any]) -> dict[str, Any]:
        recurring = params.get("recurring")
        lookup = params.get("lookup_key")
        if lookup and params.get("transfer_lookup_key") == "true":
            for other in self.objects["price"].values():
                if other["lookup_key"] == lookup:
                    other["lookup_key"] = None
        return self.put(
            {
                "id": new_id("price_"),
                "object": "price",
                "active": True,
                "currency": params["currency"],
                "product": params["product"],
                "unit_amount": int(params["unit_amount"]) if "unit_amount" in params else None,
                "unit_amount_decimal": params.get("unit_amount_decimal", params.get("unit_amount")),
                "recurring": {
                    "interval": recurring["interval"],
                    "usage_type": recurring.get("usage_type", "licensed"),
                    "meter": recurring.get("meter"),
                }
                if recurring
                else None,
                "lookup_key": lookup,
                "metadata": params.get("metadata", {}),
                "type": "recurring" if recurring else "one_time",
                "created": int(self.now()),
                "billing_scheme": params.get("billing_scheme", "per_unit"),
                "tiers_mode": params.get("tiers_mode"),
                "tiers": [
                    {
                        "up_to": None if t["up_to"] == "inf" else int(t["up_to"]),
                        "unit_amount": int(t["unit_amount"]) if "unit_amount" in t else None,
                        "unit_amount_decimal": t.get("unit_amount_decimal", t.get("unit_amount")),
                    }
                    for t in params.get("tiers", [])
                ]
                or None,
            }
        )

    def meter(self, params: dict[str, Any]) -> dict[str, Any]:
        for m in self.objects["billing.meter"].values():
            if m["event_name"] == params["event_name"] and m["status"] == "active":
                raise ValueError(
                    f"An active meter with event_name {params['event_name']} already exists."
                )
        return self.put(
            {
                "id": new_id("mtr_"),
                "object": "billing.meter",
                "event_name": params["event_name"],
                "display_name": params["display_name"],
                "status": "active",
                "default_aggregation": {"formula": params["default_aggregation"]["formula"]},
                "created": int(self.now()),
            }
        )

    def meter_event(self, params: dict[str, Any]) -> dict[str, Any]:
        """Record an accepted meter event. Raises ValueError for a repeated identifier."""
        identifier = params.get("identifier") or new_id("mev_")
        if identifier in self.identifiers:
            self.duplicate_refusals += 1
            raise ValueError(f"An event already exists with identifier {identifier}.")
        self.identifiers.add(identifier)
        event = {
            "object": "billing.meter_event",
            "created": int(self.now()),
            "livemode": False,
            "event_name": params["event_name"],
            "identifier": identifier,
            "payload": dict(params["payload"]),
            "timestamp": int(params.get("timestamp") or self.now()),
        }
        self.meter_events.append(event)
        return event

    def event_summary(self, meter_id: str, customer: str, start: int, end: int) -> dict[str, Any]:
        meter = self.get("billing.meter", meter_id)
        total = sum(
            float(e["payload"]["value"])
            for e in self.meter_events
            if e["event_name"] == meter["event_name"]
            and e["payload"].get("stripe_customer_id") == customer
            and start <= e["timestamp"] < end
        )
        return {
            "object": "billing.meter_event_summary",
            "id": new_id("mtrusg_"),
            "meter": meter_id,
            "aggregated_value": total,
            "start_time": start,
            "end_time": end,
            "livemode": False,
        }

    def checkout_session(self, params: dict[str, Any]) -> dict[str, Any]:
        sid = new_id("cs_test_")
        return self.put(
            {
                "id": sid,
                "object": "checkout.session",
                "mode": params["mode"],
                "status": "open",
                "payment_status": "unpaid",
                "url": f"{self.base_url}/pay/{sid}",
                "success_url": params["success_url"],
                "cancel_url": params.get("cancel_url"),
                "customer": params.get("customer"),
                "customer_email": params.get("customer_email"),
                "subscription": None,
                "payment_intent": None,
                "metadata": params.get("metadata", {}),
                "line_items": params["line_items"],
                "subscription_metadata": params.get("subscription_data", {}).get("metadata", {}),
                "payment_intent_metadata": params.get("payment_intent_data", {}).get(
                    "metadata", {}
                ),
                "setup_future_usage": params.get("payment_intent_data", {}).get(
                    "setup_future_usage"
                ),
                "created": int(self.now()),
            }
        )

    def portal_session(self, customer: str, return_url: str | None) -> dict[str, Any]:
        self.get("customer", customer)
        sid = new_id("bps_")
        return self.put(
            {
                "id": sid,
                "object": "billing_portal.session",
                "customer": customer,
                "return_url": return_url,
                "url": f"{self.base_url}/billing/{sid}",
                "configuration": "bpc_standin",
                "created": int(self.now()),
                "flow": None,
                "livemode": False,
                "locale": None,
                "on_behalf_of": None,
            }
        )

    def subscriptions_of(self, customer: str) -> list[dict[str, Any]]:
        return [s for s in self.objects["subscription"].values() if s["customer"] == customer]

    def update_card(self, customer: str, last4: str) -> dict[str, Any]:
        """A new default card: the customer changes, and past-due subscriptions are paid with
        it (an invoice paid, the subscription active again), as Stripe retries them."""
        cus = self.get("customer", customer)
        cus["invoice_settings"] = {"default_payment_method": new_id("pm_"), "last4": last4}
        self.emit("customer.updated", cus)
        for sub in self.subscriptions_of(customer):
            if sub["status"] in ("past_due", "unpaid"):
                self.payment(sub["id"], paid=True)
        return cus

    # -- the lifecycle -----------------------------------------------------------------------
    def complete_checkout(self, session_id: str) -> dict[str, Any]:
        """The customer pays: customer, subscription and first invoice appear, events go out."""
        cs = self.get("checkout.session", session_id)
        if cs["status"] == "complete":
            return cs
        customer = cs["customer"] or self.customer(cs["customer_email"])["id"]
        now = int(self.now())
        items = [
            {
                "id": new_id("si_"),
                "object": "subscription_item",
                "price": _copy(self.get("price", item["price"])),
                "quantity": int(item.get("quantity", 1)),
                "current_period_start": now,
                "current_period_end": now + PERIOD_S,
            }
            for item in cs["line_items"]
        ]
        sub = self.put(
            {
                "id": new_id("sub_"),
                "object": "subscription",
                "customer": customer,
                "status": "active",
                "items": {"object": "list", "data": items},
                "metadata": cs["subscription_metadata"],
                "cancel_at_period_end": False,
                "cancel_at": None,
                "created": now,
                "latest_invoice": None,
            }
        )
        cs.update(
            status="complete", payment_status="paid", customer=customer, subscription=sub["id"]
        )
        self.emit("customer.subscription.created", sub)
        self.invoice(sub, paid=True)
        self.emit("checkout.session.completed", cs)
        return cs

    def invoice(self, sub: dict[str, Any], paid: bool) -> dict[str, Any]:
        inv = self.put(
            {
                "id": new_id("in_"),
                "object": "invoice",
                "customer": sub["customer"],
                "status": "paid" if paid else "open",
                "created": int(self.now()),
                "parent": {
                    "type": "subscription_details",
                    "subscription_details": {
                        "subscription": sub["id"],
                        "metadata": sub["metadata"],
                    },
                },
            }
        )
        sub["latest_invoice"] = inv["id"]
        self.emit("invoice.paid" if paid else "invoice.payment_failed", inv)
        return inv

    def set_status(self, sub_id: str, status: str) -> dict[str, Any]:
        sub = self.get("subscription", sub_id)
        sub["status"] = status
        self.emit(
            "customer.subscription.deleted"
            if status == "canceled"
            else "customer.subscription.updated",
            sub,
        )
        return sub

    def payment(self, sub_id: str, paid: bool) -> dict[str, Any]:
        """A renewal charge succeeds or fails, as Stripe would report it."""
        sub = self.get("subscription", sub_id)
        self.invoice(sub, paid)
        return self.set_status(sub_id, "active" if paid else "past_due")

    def change_price(self, sub_id: str, price_id: str) -> dict[str, Any]:
        sub = self.get("subscription", sub_id)
        sub["items"]["data"][0]["price"] = _copy(self.get("price", price_id))
        self.emit("customer.subscription.updated", sub)
        return sub

    def cancel_at_period_end(self, sub_id: str, cancel: bool) -> dict[str, Any]:
        """Cancel when the period ends (True), or take that back (False): Stripe sets
        ``cancel_at_period_end`` and ``cancel_at`` (the period's end) and sends
        customer.subscription.updated; the subscription stays active until then."""
        sub = self.get("subscription", sub_id)
        end = max(item["current_period_end"] for item in sub["items"]["data"])
        sub.update(cancel_at_period_end=cancel, cancel_at=end if cancel else None)
        self.emit("customer.subscription.updated", sub)
        return sub

    def delete_customer(self, customer_id: str) -> dict[str, Any]:
        cus = self.get("customer", customer_id)
        for sub in self.objects["subscription"].values():
            if sub["customer"] == customer_id and sub["status"] != "canceled":
                self.set_status(sub["id"], "canceled")
        cus["deleted"] = True
        self.emit("customer.deleted", cus)
        return {"id": customer_id, "object": "customer", "deleted": True}


def _copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy(v) for v in obj]
    return obj
