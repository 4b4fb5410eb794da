"""The Stripe stand-in's HTTP layer: the /v1 endpoints tollway calls, validated like Stripe,
plus /_standin control routes for tests and demos, fault injection, and signed webhook
delivery with Stripe's retry behaviour (non-2xx or no answer → try again, backing off).

Control routes (not Stripe's):
    GET  /pay/{session}                              the customer pays; 303 to success_url
    POST /_standin/checkout/sessions/{id}/complete   the same, as JSON
    POST /_standin/trigger    {"event": "...", "subscription"|"customer": ..., "price": ...}
    POST /_standin/faults     {"path": "/v1/...", "status": 500, "times": 1, "retry_after": 2,
                               "delay_ms": 0, "kind": "error"|"delay"|"reset"}; DELETE clears
    GET  /_standin/events, GET /_standin/deliveries, GET /_standin/healthz
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import stripe
from aiohttp import web

from devkit.standin.forms import FormError, decode
from devkit.standin.objects import NotFound, World, new_id

log = logging.getLogger("devkit.standin")
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0)


class ParamError(Exception):
    def __init__(self, message: str, param: str, code: str = "parameter_invalid") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def check_tiers(p: dict[str, Any]) -> None:
    """billing_scheme=tiered needs tiers_mode and tiers, the last one up_to=inf, each with an
    amount; per_unit (the default) needs unit_amount(_decimal) and no tiers."""
    if p.get("billing_scheme", "per_unit") not in ("per_unit", "tiered"):
        raise ParamError("Invalid billing_scheme", "billing_scheme")
    if p.get("billing_scheme") != "tiered":
        if "tiers" in p or "tiers_mode" in p:
            raise ParamError("tiers need billing_scheme=tiered", "tiers")
        return
    tiers = p.get("tiers")
    if p.get("tiers_mode") not in ("graduated", "volume"):
        raise ParamError("Missing required param: tiers_mode.", "tiers_mode")
    if not isinstance(tiers, list) or not tiers or not all(isinstance(t, dict) for t in tiers):
        raise ParamError("Missing required param: tiers.", "tiers")
    for i, t in enumerate(tiers):
        last = i == len(tiers) - 1
        if (t.get("up_to") == "inf") != last or (not last and not str(t.get("up_to")).isdigit()):
            raise ParamError(
                "Only the last tier may be up_to=inf, and it must be", f"tiers[{i}][up_to]"
            )
        if "unit_amount" not in t and "unit_amount_decimal" not in t and "flat_amount" not in t:
            raise ParamError("Each tier needs an amount", f"tiers[{i}]")


def stripe_error(status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None) -> web.Response:  # fmt: skip
    body: dict[str, Any] = {"type": kind, "message": message}
    if param:
        body["param"] = param
    if code:
        body["code"] = code
    return web.json_response({"error": body}, status=status, headers=headers)


def check_params(
    params: dict[str, Any], allowed: set[str], required: frozenset[str] | set[str] = frozenset()
) -> None:
    for name in params:
        if name not in allowed and name != "expand":
            raise ParamError(f"Received unknown parameter: {name}", name, "parameter_unknown")
    for name in sorted(required):
        if name not in params or params[name] == "":
            raise ParamError(f"Missing required param: {name}.", name, "parameter_missing")


def check_metadata(meta: Any, param: str = "metadata") -> dict[str, str]:
    if meta in (None, ""):
        return {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ParamError("Invalid object", param)
    if len(meta) > 50:
        raise ParamError("Metadata can have up to 50 keys", param)
    for k, v in meta.items():
        if len(k) > 40:
            raise ParamError(f"Metadata keys can be up to 40 characters long: {k}", f"{param}[{k}]")
        if len(v) > 500:
            raise ParamError(
                f"Metadata values can be up to 500 characters long: {k}", f"{param}[{k}]"
            )
    return meta


def check_len(params: dict[str, Any], name: str, limit: int) -> None:
    v = params.get(name)
    if v is not None and (not isinstance(v, str) or len(v) > limit):
        raise ParamError(f"Invalid string: {name} must be at most {limit} characters", name)


@dataclass
class Fault:
    path: str
    kind: str = "error"  # error | delay | reset | lost (handled, then the answer is dropped)
    status: int = 500
    times: int = 1
    retry_after: int | None = None
    delay_ms: int = 0


@dataclass
class Standin:
    world: World
    webhook_url: str = ""
    webhook_secret: str = ""
    faults: list[Fault] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    # Idempotency-Key -> (status, body) of the first successful answer, replayed as Stripe does.
    idempotent: dict[str, tuple[int, str]] = field(default_factory=dict)
    session_ttl_s: int = 900  # v2 meter event session tokens, as Stripe's: 15 minutes
    sessions: dict[str, float] = field(default_factory=dict)  # token -> expiry
    calls: Counter[str] = field(default_factory=Counter)  # API requests by path, for benches
    retry_delays: tuple[float, ...] = RETRY_DELAYS_S

    def __post_init__(self) -> None:
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.world.listeners.append(self._queue.put_nowait)
        self._sender: asyncio.Task[None] | None = None

    # -- webhook delivery ----------------------------------------------------------------------
    async def _deliver_forever(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while True:
                event = await self._queue.get()
                if self.webhook_url and self.webhook_secret:
                    await self._deliver(http, event)

    async def _deliver(self, http: aiohttp.ClientSession, event: dict[str, Any]) -> None:
        payload = json.dumps(event)
        for attempt, delay in enumerate((0.0, *self.retry_delays), start=1):
            await asyncio.sleep(delay)
            header = stripe.WebhookSignature.generate_signature_header(payload, self.webhook_secret)
            status: int | str
            try:
                async with http.post(self.webhook_url, data=payload.encode(), headers={
                        "Stripe-Signature": header, "content-type": "application/json"}) as r:  # fmt: skip
                    status = r.status
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                status = type(exc).__name__
            self.deliveries.append(
                {"event": event["id"], "type": event["type"], "attempt": attempt, "status": status}
            )
            if isinstance(status, int) and 200 <= status < 300:
                return
        log.error("webhook delivery gave up on %s after %d attempts", event["id"], attempt)

    async def start(self, _: web.Application) -> None:
        self._sender = asyncio.create_task(self._deliver_forever())

    async def stop(self, _: web.Application) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    # -- middleware ----------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        fault = None
        if request.path.startswith(("/v1/", "/v2/")):
            self.calls[request.path] += 1
            auth = request.headers.get("Authorization", "")
            if request.path == "/v2/billing/meter_event_stream":
                expiry = self.sessions.get(auth.removeprefix("Bearer "), 0.0)
                if expiry <= self.world.now():
                    return stripe_error(401, "The meter event session token is invalid or expired.",
                                        kind="authentication_error")  # fmt: skip
            elif not auth.startswith("Bearer sk_") and not auth.startswith("Bearer rk_"):
                return stripe_error(401, "You did not provide an API key.")
            fault = next(
                (f for f in self.faults if request.path.startswith(f.path) and f.times > 0), None
            )
            if fault is not None:
                fault.times -= 1
                if fault.delay_ms:
                    await asyncio.sleep(fault.delay_ms / 1000)
                if fault.kind == "reset":
                    self._drop(request)
                if fault.kind == "error":
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
                    kind = "rate_limit_error" if fault.status == 429 else "api_error"
                    return stripe_error(fault.status, "Injected fault", kind=kind, headers=headers)
        idem = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        if idem and idem in self.idempotent:
            status, body = self.idempotent[idem]
            return web.Response(status=status, text=body, content_type="application/json",
                                headers={"Idempotent-Replayed": "true"})  # fmt: skip
        try:
            resp: web.Response = await handler(request)
        except ParamError as exc:
            return stripe_error(400, str(exc), exc.param, exc.code)
        except FormError as exc:
            return stripe_error(400, str(exc), exc.param, "parameter_invalid")
        except NotFound as exc:
            return stripe_error(404, str(exc), "id", "resource_missing")
        if idem and 200 <= resp.status < 300 and resp.text is not None:
            self.idempotent[idem] = (resp.status, resp.text)
        if fault is not None and fault.kind == "lost":
            self._drop(request)  # Stripe did the work; the answer never arrives
        return resp

    @staticmethod
    def _drop(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError

    async def params(self, request: web.Request) -> dict[str, Any]:
        pairs = list(request.query.items())
        if request.method == "POST" and request.can_read_body:
            form = await request.post()
            pairs += [(k, v) for k, v in form.items() if isinstance(v, str)]
        return decode(pairs)

    # -- /v1 -----------------------------------------------------------------------------------
    async def create_customer(self, request: web.Request) -> web.Response:
        p = await self.params(request)
        check_params(p, {"email", "metadata", "name", "description"})
        check_len(p, "email", 512)
        return web.json_response(
            self.world.customer(p.get("email"), check_metadata(p.get("metadata")))
        )

    async def get_object(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        kinds = {"customers": "customer", "products": "product", "prices": "price",
                 "subscriptions": "subscription", "invoices": "invoice"}  # fmt: skip
        if kind not in kinds:
            raise web.HTTPNotFound()
        check_params(await self.params(request), set())
        return web.json_response(self.world.get(kinds[kind], request.match_info["id"]))

    async def delete_customer(self, request: web.Request) -> web.Response:
        return web.json_response(self.world.delete_customer(request.match_info["id"]))

    async def create_product(self, request: web.Request) -> web.Response:
        p = await self.params(request)
        check_params(p, {"id", "name", "active", "metadata", "description"}, {"name"})
        check_len(p, "name", 250)
        check_metadata(p.get("metadata"))
        if p.get("id") in self.world.objects["product"]:
            raise ParamError(f"Product already exists: {p['id']}", "id", "resource_already_exists")
        return web.json_response(self.world.product(p))

    async def update_product(self, request: web.Request) -> web.Response:
        p = await self.params(request)
        check_params(p, {"name", "active", "metadata", "description"})
        check_len(p, "name", 250)
        check_metadata(p.get("metadata"))
        product = self.world.get("product", request.match_info["id"])
        if "name" in p:
            product["name"] = p["name"]
        if "active" in p:
            product["active"] = p["active"] != "false"
        product["metadata"] = {**product["metadata"], **p.get("metadata", {})}
        return web.json_response(product)

    async def create_price(self, request: web.Request) -> web.Response:
        p = await self.params(request)
        check_params(p, {"currency", "product", "unit_amount", "unit_amount_decimal", "recurring",
                         "lookup_key", "metadata", "transfer_lookup_key", "nickname", "billing_scheme",
                         "tiers_mode", "tiers"}, {"currency", "product"})  # fmt: skip
        self.world.get("product", p["product"])
        if "unit_amount" in p and not str(p["unit_amount"]).isdigit():
            raise ParamError("Invalid integer: unit_amount", "unit_amount")
        check_len(p, "lookup_key", 200)
        check_metadata(p.get("metadata"))
        rec = p.get("recurring")
        if rec is not None and (
            not isinstance(rec, dict) or rec.get("interval") not in ("day", "week", "month", "year")
        ):
            raise ParamError("Invalid recurring[interval]", "recurring[interval]")
        if rec is not None and rec.get("usage_type", "licensed") not in ("licensed", "metered"):
            raise ParamError("Invalid recurring[usage_type]", "recurring[usage_type]")
        if rec is not None and rec.get("usage_type") == "metered":
            if not rec.get("meter"):
                raise ParamError("Metered prices need recurring[meter]", "recurring[meter]")
            self.world.get("billing.meter", rec["meter"])
        check_tiers(p)
        lookup = p.get("lookup_key")
        taken = [
            x["id"]
            for x in self.world.objects["price"].values()
            if lookup and x["lookup_key"] == lookup
        ]
        if taken and p.get("transfer_lookup_key") != "true":
            raise ParamError(f"A price ({taken[0]}) already uses the lookup key {lookup}. Pass "
                             "transfer_lookup_key to move it.", "lookup_key")  # fmt: skip
        return web.json_response(self.world.price(p))

    async def list_prices(self, request: web.Request) -> web.Response:
        p = await self.params(request)
        check_params(p, {"lookup_keys", "active", "product", "limit"})
        keys = p.get("lookup_keys")
        if keys is not None and not isinstance(keys, list):
            raise ParamError("Invalid array", "lookup_keys")
        prices = [
            x for x in self.world.objects["price"].values()
            if (keys is None or x["lookup_key"] in keys)
            and (p.get("active") is None or x["active"] == (p["active"] == "true"))
            and (p.get("product") is None or x["product"] == p["product"])
        ]  # fmt: skip
        return web.json_response(
            {"object": "list", "url": "/v1/prices", "has_more": False, "data": prices}
        )

    async def create_session(self, request: web.Request) -> web.Response:
        p = await self.params(request)
        check_params(
            p,
            {"mode", "success_url", "cancel_url", "line_items", "customer", "customer_email",
             "metadata", "subscription_data"},
            {"mode", "success_url"},
        )  # fmt: skip
        if p["mode"] not in ("payment", "subscription", "setup"):
            raise ParamError("Invalid mode: must be one of payment, setup, or subscription", "mode")
        for name, limit in (("success_url", 5000), ("cancel_url", 5000), ("customer_email", 512)):
            check_len(p, name, limit)
        check_metadata(p.get("metadata"))
        items = p.get("line_items")
        if p["mode"] == "subscription" and not items:
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
        sub_data = p.get("subscription_data", {})
        if not isinstance(sub_data, dict):
            raise ParamError("Invalid object", "subscription_data")
        check_metadata(sub_data.get("metadata"), "subscription_data[metadata]")
        if p.get("customer"):
            self.world.get("customer", p["customer"])
        return web.json_response(self.world.checkout_session(p))

    async def get_session(self, request: web.Request) -> web.Response:
        check_params(await self.params(request), set())
        return web.json_response(self.world.get("checkout.session", request.match_info["id"]))

    async def update_subscription(self, request: web.Request) -> web.Response:
        p = await self.params(request)
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
        return web.json_response(self.world.get("subscription", sub_id))

    async def cancel_subscription(self, request: web.Request) -> web.Response:
        return web.json_response(self.world.set_status(request.match_info["id"], "canceled"))

    async def create_meter(self, request: web.Request) -> web.Response:
        p = await self.params(request)
        check_params(p, {"event_name", "display_name", "default_aggregation", "customer_mapping",
                         "value_settings", "event_time_window"},
                     {"event_name", "display_name", "default_aggregation"})  # fmt: skip
        check_len(p, "event_name", 100)
        agg = p["default_aggregation"]
        if not isinstance(agg, dict) or agg.get("formula") not in ("sum", "count", "last"):
            raise ParamError("Invalid default_aggregation[formula]", "default_aggregation[formula]")
        try:
            return web.json_response(self.world.meter(p))
        except ValueError as exc:
            raise ParamError(str(exc), "event_name") from None

    async def list_meters(self, request: web.Request) -> web.Response:
        check_params(await self.params(request), {"status", "limit"})
        data = list(self.world.objects["billing.meter"].values())
        return web.json_response(
            {"object": "list", "url": "/v1/billing/meters", "has_more": False, "data": data}
        )

    async def create_meter_event(self, request: web.Request) -> web.Response:
        p = await self.params(request)
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
            ts = str(p["timestamp"])
            if not ts.isdigit():
                raise ParamError("Invalid integer: timestamp", "timestamp")
            now = int(self.world.now())
            if int(ts) < now - 35 * 86400 or int(ts) > now + 300:
                raise ParamError(
                    "Timestamp must be within the past 35 calendar days or up to 5 minutes in the future.",
                    "timestamp",
                )
        try:
            return web.json_response(self.world.meter_event(p))
        except ValueError as exc:
            raise ParamError(str(exc), "identifier") from None

    async def event_summaries(self, request: web.Request) -> web.Response:
        p = await self.params(request)
        check_params(p, {"customer", "start_time", "end_time", "value_grouping_window", "limit"},
                     {"customer", "start_time", "end_time"})  # fmt: skip
        if not (str(p["start_time"]).isdigit() and str(p["end_time"]).isdigit()):
            raise ParamError("Invalid integer: start_time/end_time", "start_time")
        summary = self.world.event_summary(
            request.match_info["id"], p["customer"], int(p["start_time"]), int(p["end_time"])
        )
        return web.json_response({"object": "list", "has_more": False, "data": [summary],
                                  "url": f"/v1/billing/meters/{request.match_info['id']}/event_summaries"})  # fmt: skip

    async def create_meter_session(self, _: web.Request) -> web.Response:
        token = new_id("mes_tok_")
        expires = self.world.now() + self.session_ttl_s
        self.sessions[token] = expires

        def iso(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

        return web.json_response({
            "id": new_id("mes_"), "object": "v2.billing.meter_event_session", "livemode": False,
            "authentication_token": token, "created": iso(self.world.now()), "expires_at": iso(expires),
        })  # fmt: skip

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
        parsed = []
        for i, e in enumerate(events):
            if not isinstance(e, dict) or set(e) - {
                "event_name",
                "identifier",
                "payload",
                "timestamp",
            }:
                raise ParamError("Invalid meter event", f"events[{i}]")
            payload = e.get("payload")
            if not (isinstance(e.get("event_name"), str) and 0 < len(e["event_name"]) <= 100
                    and isinstance(payload, dict) and all(isinstance(v, str) for v in payload.values())
                    and payload.get("stripe_customer_id") and payload.get("value")):  # fmt: skip
                raise ParamError("Invalid meter event", f"events[{i}]")
            try:
                ts = datetime.fromisoformat(
                    str(e.get("timestamp")).replace("Z", "+00:00")
                ).timestamp()
            except ValueError:
                raise ParamError("Invalid timestamp", f"events[{i}][timestamp]") from None
            parsed.append({**e, "timestamp": str(int(ts))})
        for e in parsed:
            if e.get("identifier") not in self.world.identifiers:
                self.world.meter_event(e)
        return web.json_response({})

    async def list_meter_events(self, _: web.Request) -> web.Response:
        return web.json_response({"data": self.world.meter_events})

    # -- control -------------------------------------------------------------------------------
    async def pay(self, request: web.Request) -> web.Response:
        cs = self.world.complete_checkout(request.match_info["id"])
        raise web.HTTPSeeOther(cs["success_url"].replace("{CHECKOUT_SESSION_ID}", cs["id"]))

    async def complete(self, request: web.Request) -> web.Response:
        return web.json_response(self.world.complete_checkout(request.match_info["id"]))

    async def trigger(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            event, sub, cus = body["event"], body.get("subscription", ""), body.get("customer", "")
        except (ValueError, KeyError, TypeError):
            return stripe_error(400, 'send JSON {"event": ..., "subscription" or "customer": ...}')
        w = self.world
        actions = {
            "invoice.payment_failed": lambda: w.payment(sub, paid=False),
            "invoice.paid": lambda: w.payment(sub, paid=True),
            "customer.subscription.updated": lambda: (
                w.change_price(sub, body["price"])
                if body.get("price")
                else w.set_status(sub, body.get("status", "active"))
            ),
            "customer.subscription.deleted": lambda: w.set_status(sub, "canceled"),
            "customer.deleted": lambda: w.delete_customer(cus),
        }
        if event not in actions:
            return stripe_error(400, f"can trigger: {', '.join(actions)}")
        try:
            return web.json_response(actions[event]())
        except NotFound as exc:
            return stripe_error(404, str(exc), code="resource_missing")
        except KeyError as exc:
            return stripe_error(400, f"missing {exc}")

    async def set_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            fault = Fault(**body)
        except (ValueError, TypeError) as exc:
            return stripe_error(400, f"bad fault: {exc}")
        self.faults.append(fault)
        return web.json_response({"faults": len(self.faults)})

    async def clear_faults(self, _: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"faults": 0})

    async def list_events(self, _: web.Request) -> web.Response:
        return web.json_response({"data": self.world.events})

    async def list_deliveries(self, _: web.Request) -> web.Response:
        return web.json_response({"data": self.deliveries})

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        r = app.router
        r.add_post("/v1/customers", self.create_customer)
        r.add_delete("/v1/customers/{id}", self.delete_customer)
        r.add_post("/v1/products", self.create_product)
        r.add_post("/v1/products/{id}", self.update_product)
        r.add_post("/v1/prices", self.create_price)
        r.add_get("/v1/prices", self.list_prices)
        r.add_post("/v1/checkout/sessions", self.create_session)
        r.add_get("/v1/checkout/sessions/{id}", self.get_session)
        r.add_post("/v1/subscriptions/{id}", self.update_subscription)
        r.add_delete("/v1/subscriptions/{id}", self.cancel_subscription)
        r.add_post("/v1/billing/meters", self.create_meter)
        r.add_get("/v1/billing/meters", self.list_meters)
        r.add_post("/v1/billing/meter_events", self.create_meter_event)
        r.add_get("/v1/billing/meters/{id}/event_summaries", self.event_summaries)
        r.add_get("/_standin/meter_events", self.list_meter_events)
        r.add_post("/v2/billing/meter_event_session", self.create_meter_session)
        r.add_post("/v2/billing/meter_event_stream", self.stream_events)
        r.add_get("/v1/{kind}/{id}", self.get_object)
        r.add_get("/pay/{id}", self.pay)
        r.add_post("/_standin/checkout/sessions/{id}/complete", self.complete)
        r.add_post("/_standin/trigger", self.trigger)
        r.add_post("/_standin/faults", self.set_fault)
        r.add_delete("/_standin/faults", self.clear_faults)
        r.add_get("/_standin/events", self.list_events)
        r.add_get("/_standin/deliveries", self.list_deliveries)
        r.add_get("/_standin/healthz", self.healthz)
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        return app
