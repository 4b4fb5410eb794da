"""The billing endpoints: Checkout sessions, subscriptions, and usage (v1 meter events, event
summaries, and the v2 meter event session and stream)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from devkit.standin.objects import World, new_id
from devkit.standin.payments import check_line_items
from devkit.standin.validation import (
    ParamError,
    check_len,
    check_metadata,
    check_params,
    read_params,
)

SESSION_TTL_S = 900  # v2 meter event session tokens, as Stripe's: 15 minutes


class Billing:
    def __init__(self, world: World, session_ttl_s: int = SESSION_TTL_S) -> None:
        self.world = world
        self.session_ttl_s = session_ttl_s
        self.sessions: dict[str, float] = {}  # v2 session token -> expiry

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/v1/checkout/sessions", self.create_session)
        r.add_get("/v1/checkout/sessions/{id}", self.get_session)
        r.add_post("/v1/subscriptions/{id}", self.update_subscription)
        r.add_delete("/v1/subscriptions/{id}", self.cancel_subscription)
        r.add_post("/v1/billing/meter_events", self.create_meter_event)
        r.add_get("/v1/billing/meters/{id}/event_summaries", self.event_summaries)
        r.add_post("/v2/billing/meter_event_session", self.create_meter_session)
        r.add_post("/v2/billing/meter_event_stream", self.stream_events)

    def session_valid(self, token: str) -> bool:
        return self.sessions.get(token, 0.0) > self.world.now()

    # -- Checkout and subscriptions ----------------------------------------------------------
    async def create_session(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        check_params(
            p,
            {
                "mode",
                "success_url",
                "cancel_url",
                "line_items",
                "customer",
                "customer_email",
                "metadata",
                "subscription_data",
                "payment_intent_data",
            },
            {"mode", "success_url"},
        )
        if p["mode"] not in ("payment", "subscription", "setup"):
            raise ParamError("Invalid mode: must be one of payment, setup, or subscription", "mode")
        for name, limit in (("success_url", 5000), ("cancel_url", 5000), ("customer_email", 512)):
            check_len(p, name, limit)
        check_metadata(p.get("metadata"))
        items = p.get("line_items")
        if p["mode"] in ("subscription", "payment") and not items:
            raise ParamError(
                "Missing required param: line_items.", "line_items", "parameter_missing"
            )
        if not isinstance(items, list):
            raise ParamError("Invalid array", "line_items")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "price" not in item:
                raise ParamError(
                    f"Missing required param: line_items[{i}][price].",
                    f"line_items[{i}][price]",
                    "parameter_missing",
                )
            self.world.get("price", item["price"])
            if not str(item.get("quantity", "1")).isdigit():
                raise ParamError("Invalid integer", f"line_items[{i}][quantity]")
        check_line_items(self.world, p["mode"], items)
        pi_data = p.get("payment_intent_data", {})
        if pi_data and p["mode"] != "payment":
            raise ParamError(
                f"You can not pass `payment_intent_data` in `{p['mode']}` mode.",
                "payment_intent_data",
            )
        if not isinstance(pi_data, dict):
            raise ParamError("Invalid object", "payment_intent_data")
        check_metadata(pi_data.get("metadata"), "payment_intent_data[metadata]")
        if pi_data.get("setup_future_usage") not in (None, "on_session", "off_session"):
            raise ParamError(
                "Invalid setup_future_usage: must be one of on_session or off_session",
                "payment_intent_data[setup_future_usage]",
            )
        sub_data = p.get("subscription_data", {})
        if not isinstance(sub_data, dict):
            raise ParamError("Invalid object", "subscription_data")
        check_metadata(sub_data.get("metadata"), "subscription_data[metadata]")
        if p.get("customer"):
            self.world.get("customer", p["customer"])
        return web.json_response(self.world.checkout_session(p))

    async def get_session(self, request: web.Request) -> web.Response:
        check_params(await read_params(request), set())
        return web.json_response(self.world.get("checkout.session", request.match_info["id"]))

    async def update_subscription(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        check_params(p, {"items", "metadata", "proration_behavior", "cancel_at_period_end"})
        sub_id = request.match_info["id"]
        items = p.get("items")
        if items:
            if (
                not isinstance(items, list)
                or not isinstance(items[0], dict)
                or "price" not in items[0]
            ):
                raise ParamError("Invalid array", "items")
            return web.json_response(self.world.change_price(sub_id, items[0]["price"]))
        if "cancel_at_period_end" in p:
            flag = p["cancel_at_period_end"]
            if flag not in ("true", "false", True, False):
                raise ParamError("Invalid boolean", "cancel_at_period_end")
            at_end = flag in ("true", True)
            return web.json_response(self.world.cancel_at_period_end(sub_id, at_end))
        return web.json_response(self.world.get("subscription", sub_id))

    async def cancel_subscription(self, request: web.Request) -> web.Response:
        return web.json_response(self.world.set_status(request.match_info["id"], "canceled"))

    # -- usage: v1 meter events ------------------------------------------------------------
    async def create_meter_event(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        check_params(
            p, {"event_name", "payload", "identifier", "timestamp"}, {"event_name", "payload"}
        )
        check_len(p, "event_name", 100)
        check_len(p, "identifier", 100)
        payload = p["payload"]
        if not isinstance(payload, dict) or not all(isinstance(v, str) for v in payload.values()):
            raise ParamError("Invalid object: payload values must be strings", "payload")
        for name in ("stripe_customer_id", "value"):
            if not payload.get(name):
                raise ParamError(
                    f"Missing required param: payload[{name}].",
                    f"payload[{name}]",
                    "parameter_missing",
                )
        try:
            float(payload["value"])
        except ValueError:
            raise ParamError("Invalid payload[value]: must be a number", "payload[value]") from None
        if "timestamp" in p:
            self._check_timestamp(str(p["timestamp"]))
        try:
            return web.json_response(self.world.meter_event(p))
        except ValueError as exc:
            raise ParamError(str(exc), "identifier") from None

    def _check_timestamp(self, ts: str) -> None:
        if not ts.isdigit():
            raise ParamError("Invalid integer: timestamp", "timestamp")
        now = int(self.world.now())
        if int(ts) < now - 35 * 86400 or int(ts) > now + 300:
            raise ParamError(
                "Timestamp must be within the past 35 calendar days or up to 5 minutes in the future.",
                "timestamp",
            )

    async def event_summaries(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        check_params(
            p,
            {"customer", "start_time", "end_time", "value_grouping_window", "limit"},
            {"customer", "start_time", "end_time"},
        )
        if not (str(p["start_time"]).isdigit() and str(p["end_time"]).isdigit()):
            raise ParamError("Invalid integer: start_time/end_time", "start_time")
        summary = self.world.event_summary(
            request.match_info["id"], p["customer"], int(p["start_time"]), int(p["end_time"])
        )
        return web.json_response(
            {
                "object": "list",
                "has_more": False,
                "data": [summary],
                "url": f"/v1/billing/meters/{request.match_info['id']}/event_summaries",
            }
        )

    # -- usage: the v2 stream --------------------------------------------------------------
    async def create_meter_session(self, _: web.Request) -> web.Response:
        token = new_id("mes_tok_")
        expires = self.world.now() + self.session_ttl_s
        self.sessions[token] = expires

        def iso(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

        return web.json_response(
            {
                "id": new_id("mes_"),
                "object": "v2.billing.meter_event_session",
                "livemode": False,
                "authentication_token": token,
                "created": iso(self.world.now()),
                "expires_at": iso(expires),
            }
        )

    async def stream_events(self, request: web.Request) -> web.Response:
        """v2: up to 100 events; well-formed requests are taken whole, repeats dropped silently
        (Stripe validates the events themselves asynchronously)."""
        try:
            body = await request.json()
        except ValueError:
            raise ParamError("Request body must be JSON", "events") from None
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not 1 <= len(events) <= 100:
            raise ParamError("events must be a list of 1 to 100 meter events", "events")
        parsed = [_stream_event(i, e) for i, e in enumerate(events)]
        for e in parsed:
            if e.get("identifier") not in self.world.identifiers:
                self.world.meter_event(e)
        return web.json_response({})


_STREAM_FIELDS = {"event_name", "identifier", "payload", "timestamp"}


def _stream_event(i: int, e: Any) -> dict[str, Any]:
    """One v2 stream event, validated, with its ISO timestamp as epoch seconds."""
    if not isinstance(e, dict) or set(e) - _STREAM_FIELDS:
        raise ParamError("Invalid meter event", f"events[{i}]")
    payload = e.get("payload")
    if not (
        isinstance(e.get("event_name"), str)
        and 0 < len(e["event_name"]) <= 100
        and isinstance(payload, dict)
        and all(isinstance(v, str) for v in payload.values())
        and payload.get("stripe_customer_id")
        and payload.get("value")
    ):
        raise ParamError("Invalid meter event", f"events[{i}]")
    try:
        ts = datetime.fromisoformat(str(e.get("timestamp")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ParamError("Invalid timestamp", f"events[{i}][timestamp]") from None
    return {**e, "timestamp": str(int(ts))}
