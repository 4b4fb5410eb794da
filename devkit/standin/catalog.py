"""The catalog endpoints: customers, products, prices and billing meters, plus the generic
``GET /v1/{kind}/{id}`` retrieve."""

from __future__ import annotations

from aiohttp import web

from devkit.standin.objects import World
from devkit.standin.validation import (
    ParamError,
    check_len,
    check_metadata,
    check_params,
    check_tiers,
    read_params,
)

_KINDS = {
    "customers": "customer",
    "products": "product",
    "prices": "price",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "payment_intents": "payment_intent",
    "charges": "charge",
    "refunds": "refund",
    "payment_methods": "payment_method",
}


class Catalog:
    def __init__(self, world: World) -> None:
        self.world = world

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/v1/customers", self.create_customer)
        r.add_get("/v1/customers", self.list_customers)
        r.add_delete("/v1/customers/{id}", self.delete_customer)
        r.add_post("/v1/products", self.create_product)
        r.add_post("/v1/products/{id}", self.update_product)
        r.add_post("/v1/prices", self.create_price)
        r.add_get("/v1/prices", self.list_prices)
        r.add_post("/v1/billing/meters", self.create_meter)
        r.add_get("/v1/billing/meters", self.list_meters)

    def add_retrieve_route(self, r: web.UrlDispatcher) -> None:
        """Registered after every other /v1 GET: aiohttp matches in order, and
        ``/v1/{kind}/{id}`` would also match ``/v1/billing/meters``."""
        r.add_get("/v1/{kind}/{id}", self.get_object)

    async def create_customer(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        check_params(p, {"email", "metadata", "name", "description"})
        check_len(p, "email", 512)
        return web.json_response(
            self.world.customer(p.get("email"), check_metadata(p.get("metadata")))
        )

    async def get_object(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind not in _KINDS:
            raise web.HTTPNotFound()
        check_params(await read_params(request), set())
        return web.json_response(self.world.get(_KINDS[kind], request.match_info["id"]))

    async def delete_customer(self, request: web.Request) -> web.Response:
        return web.json_response(self.world.delete_customer(request.match_info["id"]))

    async def create_product(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        check_params(p, {"id", "name", "active", "metadata", "description"}, {"name"})
        check_len(p, "name", 250)
        check_metadata(p.get("metadata"))
        if p.get("id") in self.world.objects["product"]:
            raise ParamError(f"Product already exists: {p['id']}", "id", "resource_already_exists")
        return web.json_response(self.world.product(p))

    async def update_product(self, request: web.Request) -> web.Response:
        p = await read_params(request)
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
        p = await read_params(request)
        check_params(
            p,
            {
                "currency",
                "product",
                "unit_amount",
                "unit_amount_decimal",
                "recurring",
                "lookup_key",
                "metadata",
                "transfer_lookup_key",
                "nickname",
                "billing_scheme",
                "tiers_mode",
                "tiers",
            },
            {"currency", "product"},
        )
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
            raise ParamError(
                f"A price ({taken[0]}) already uses the lookup key {lookup}. Pass "
                "transfer_lookup_key to move it.",
                "lookup_key",
            )
        return web.json_response(self.world.price(p))

    async def list_customers(self, request: web.Request) -> web.Response:
        """``GET /v1/customers?email=``: Stripe's exact, case-sensitive email filter."""
        p = await read_params(request)
        check_params(p, {"email", "limit"})
        found = [
            c
            for c in self.world.objects["customer"].values()
            if p.get("email") is None or c.get("email") == p["email"]
        ]
        return web.json_response(
            {"object": "list", "url": "/v1/customers", "has_more": False, "data": found}
        )

    async def list_prices(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        check_params(p, {"lookup_keys", "active", "product", "limit"})
        keys = p.get("lookup_keys")
        if keys is not None and not isinstance(keys, list):
            raise ParamError("Invalid array", "lookup_keys")
        prices = [
            x
            for x in self.world.objects["price"].values()
            if (keys is None or x["lookup_key"] in keys)
            and (p.get("active") is None or x["active"] == (p["active"] == "true"))
            and (p.get("product") is None or x["product"] == p["product"])
        ]
        return web.json_response(
            {"object": "list", "url": "/v1/prices", "has_more": False, "data": prices}
        )

    async def create_meter(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        check_params(
            p,
            {
                "event_name",
                "display_name",
                "default_aggregation",
                "customer_mapping",
                "value_settings",
                "event_time_window",
            },
            {"event_name", "display_name", "default_aggregation"},
        )
        check_len(p, "event_name", 100)
        agg = p["default_aggregation"]
        if not isinstance(agg, dict) or agg.get("formula") not in ("sum", "count", "last"):
            raise ParamError("Invalid default_aggregation[formula]", "default_aggregation[formula]")
        try:
            return web.json_response(self.world.meter(p))
        except ValueError as exc:
            raise ParamError(str(exc), "event_name") from None

    async def list_meters(self, request: web.Request) -> web.Response:
        check_params(await read_params(request), {"status", "limit"})
        data = list(self.world.objects["billing.meter"].values())
        return web.json_response(
            {"object": "list", "url": "/v1/billing/meters", "has_more": False, "data": data}
        )
