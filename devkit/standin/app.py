"""The Stripe stand-in, assembled: the /v1 and /v2 endpoints tollway calls, validated like
Stripe (``catalog``, ``billing``, ``validation``), behind Stripe's API edge (``gateway``: keys,
faults, idempotency), signed webhook delivery with Stripe's retries (``delivery``), and the
stand-in's own routes for tests and demos (``control``).

The attributes tests reach for are kept here: ``world``, ``faults``, ``idempotent``,
``sessions``, ``calls``, ``deliveries``, and the settable ``webhook_url`` and
``webhook_secret``.
"""

from __future__ import annotations

from aiohttp import web

from devkit.standin.billing import Billing
from devkit.standin.catalog import Catalog
from devkit.standin.control import Control
from devkit.standin.customer_portal import CustomerPortal
from devkit.standin.delivery import RETRY_DELAYS_S, Delivery
from devkit.standin.gateway import Fault, Gateway
from devkit.standin.intents import Intents
from devkit.standin.objects import World
from devkit.standin.payments import Refunds

__all__ = ["Fault", "Standin"]


class Standin:
    def __init__(
        self,
        world: World,
        webhook_url: str = "",
        webhook_secret: str = "",
        retry_delays: tuple[float, ...] = RETRY_DELAYS_S,
    ) -> None:
        self.world = world
        self.catalog = Catalog(world)
        self.billing = Billing(world)
        self.gateway = Gateway(self.billing.session_valid)
        self.delivery = Delivery(world, webhook_url, webhook_secret, retry_delays)
        self.control = Control(world, self.gateway, self.delivery)
        self.customer_portal = CustomerPortal(world)
        self.refunds = Refunds(world)
        self.intents = Intents(world)
        self.faults = self.gateway.faults
        self.idempotent = self.gateway.idempotent
        self.calls = self.gateway.calls
        self.sessions = self.billing.sessions
        self.deliveries = self.delivery.attempts

    @property
    def webhook_url(self) -> str:
        return self.delivery.url

    @webhook_url.setter
    def webhook_url(self, url: str) -> None:
        self.delivery.url = url

    @property
    def webhook_secret(self) -> str:
        return self.delivery.secret

    @webhook_secret.setter
    def webhook_secret(self, secret: str) -> None:
        self.delivery.secret = secret

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self.gateway.middleware])
        self.catalog.add_routes(app.router)
        self.billing.add_routes(app.router)
        self.control.add_routes(app.router)
        self.customer_portal.add_routes(app.router)
        self.refunds.add_routes(app.router)
        self.intents.add_routes(app.router)
        self.catalog.add_retrieve_route(app.router)
        app.on_startup.append(self.delivery.start)
        app.on_cleanup.append(self.delivery.stop)
        return app
