"""The portal in the whole stack: pricing → Subscribe → the stand-in's Checkout → the key shown
once → a call through Envoy with it; and the dashboard after a sign-in link. HTTP only (no
browser yet): a client that follows redirects and keeps cookies, as a browser would."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp
import pytest

from devkit.seed import seed_prices
from tests.e2e.conftest import fetch, running_edge
from tests.e2e.test_observability import documented_metrics, families
from tests.support import TEST_TIERS
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.e2e
PAID = TEST_TIERS.replace("[tiers.pro]", "[tiers.pro]\nprice_amount = 2900")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def walk(edge) -> None:
    portal = f"http://127.0.0.1:{edge.stack.ports.portal}"
    # unsafe=True: keep cookies from an IP address (127.0.0.1), as a browser does.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(f"{portal}/") as r:
            html = await r.text()
        assert r.status == 200 and "Subscribe to pro" in html
        async with browser.post(f"{portal}/subscribe", data={
                "csrf": csrf_of(html), "tier": "pro", "email": "grace@example.com"}) as r:  # fmt: skip
            checkout = await r.text()
        assert r.status == 200 and "Pay and subscribe" in checkout  # the stand-in's Checkout
        async with browser.post(r.url, data={"card": "4242 4242 4242 4242"}) as r:
            welcome = await r.text()
        # Pay → 303 to the portal's welcome page.
        assert r.status == 200 and r.url.path == "/welcome", welcome[:500]
        key = re.search(r'value="(tw_live_[0-9A-Za-z]+)"', welcome).group(1)  # type: ignore[union-attr]
        assert "only time it is shown" in welcome and f"x-api-key: {key}" in welcome
        async with browser.get(r.url) as again:
            assert again.status == 410 and key not in await again.text()
    assert edge.get("/v1/things", key).status == 200


def test_subscribe_shows_the_key_once_and_it_works_at_envoy(tmp_path: Path):
    with running_edge(tmp_path, PAID, portal=True) as edge:
        table = parse_tiers(PAID, "t")
        asyncio.run(seed_prices(edge.stack.standin_url, table))
        asyncio.run(walk(edge))
        # Checkout and claims are the portal's: the webhook service refuses anyone else.
        hook = f"http://127.0.0.1:{edge.stack.ports.webhook}"
        status, _ = fetch(f"{hook}/checkout", json.dumps({"tier": "pro"}).encode())
        assert status == 401
        assert fetch(f"{hook}/keys/claim?session_id=cs_test_1")[0] == 401
        # The portal's metrics are on their own port, as docs/metrics.md lists them; not on
        # the port customers reach.
        status, body = fetch(f"http://127.0.0.1:{edge.stack.ports.portal_metrics}/metrics")
        assert status == 200
        served = {name for name in families(body.decode()) if name.startswith("tollway_portal_")}
        assert served == documented_metrics("portal")
        assert re.search(r'^tollway_build_info\{[^}]*version="', body.decode(), re.M)
        assert fetch(f"http://127.0.0.1:{edge.stack.ports.portal}/metrics")[0] == 404
