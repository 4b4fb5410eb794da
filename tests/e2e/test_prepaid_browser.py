"""A prepaid tier from the pricing page to 402 and back, in a real browser (headless Chromium,
as tests/e2e/test_browser.py) and through the real Envoy, in both authz modes and both Redis
modes (`make test`): sign up for the prepaid plan, the key gets 402 credits_exhausted, buy a
pack in the stand-in's Checkout, spend it through Envoy to the exact request the balance
says, 402 again, buy again, pass again; then turn auto-recharge on, and the card the purchase
saved is charged once as the balance falls below the mark, through the real portal, stand-in
and webhook. A declined card credits nothing."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from devkit.seed import seed_prices
from portal.signin import digest
from tests.e2e.conftest import Edge, running_edge
from tests.e2e.test_browser import (  # noqa: F401 (browser: the fixture, by name)
    CHROMIUM,
    Shots,
    accessible,
    browser,
    mail_lines,
    newest_link,
    off_loop,
    until,
)
from tollway import schema
from tollway.tiers import parse_tiers

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="needs chromium: scripts/ensure-chromium.sh"),
]
PACK = 20
TIERS = f"""
[tiers.payg]
description = "Pay as you go."
requests_per_second = 1000.0
burst = 1000
monthly_quota = 0
over_quota = "block"
free_signup = true
prepaid = true
auto_recharge = true

[tiers.payg.credit_packs.small]
credits = {PACK}
price_amount = 500
"""
HEADER = "x-tollway-credits-remaining"
BUY = f"Buy {PACK} credits for $5.00"


@pytest.mark.timeout(300)
def test_a_prepaid_plan_from_pricing_to_402_and_back(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    shots = Shots(tmp_path)
    try:
        env = {"TOLLWAY_RECHARGE_INTERVAL_S": "0.5"}
        with running_edge(tmp_path, TIERS, portal=True, env=env) as edge:
            off_loop(asyncio.run, seed_prices(edge.stack.standin_url, parse_tiers(TIERS, "t")))
            context = browser.new_context(viewport={"width": 375, "height": 800})
            try:
                walk(edge, context.new_page(), shots)
            finally:
                context.close()
    finally:
        shots.publish()


def walk(edge: Edge, page: Any, shots: Shots) -> None:
    portal = f"http://127.0.0.1:{edge.stack.ports.portal}"
    page.set_default_timeout(15_000)

    # 1. Pricing: the prepaid plan, what a request spends, the pack.
    page.goto(portal + "/")
    assert page.get_by_role("heading", name="payg").is_visible()
    assert "Prepaid credits" in page.content() and BUY in page.content()
    accessible(page)
    shots.take(page, "prepaid-pricing")

    # 2. Sign up with an address: the confirmation link, then the key.
    seen = sum("/signup/" in line for line in mail_lines(edge))
    page.locator("#email-payg").fill("ada@example.com")
    page.get_by_role("button", name="Sign up for payg").click()
    assert "Check your inbox" in page.content()
    page.goto(newest_link(edge, "signup", seen))
    page.get_by_role("button", name="Confirm and show my key").click()
    key = page.locator("#key").input_value()
    assert key.startswith("tw_live_")

    # 3. No credits yet: 402 through Envoy, the balance in a header.
    r = edge.get("/v1/things", key)
    assert (r.status, r.json()["error"]["code"], r.headers[HEADER]) == (
        402,
        "credits_exhausted",
        "0",
    )

    # 4. The dashboard says so; a declined card credits nothing.
    page.goto(portal + "/dashboard")
    assert "Your credits are used up" in page.content()
    accessible(page)
    shots.take(page, "prepaid-dashboard-empty")
    page.get_by_role("button", name=BUY).click()
    page.wait_for_url(re.compile(r".*/pay/cs_test_.*"))
    page.get_by_label("Card number").fill("4000 0000 0000 0002")
    page.get_by_role("button", name="Pay", exact=True).click()
    assert "Your card was declined" in page.content()
    assert edge.get("/v1/things", key).status == 402

    # 5. Buy the pack: back on the dashboard, the balance arrives with the webhook.
    buy(page, portal, shots, "prepaid-checkout")
    until_shown(page, portal, f"{PACK} credits</strong>")
    shots.take(page, "prepaid-dashboard-bought")

    # 6. Spend it through Envoy, to the exact request the balance says.
    spend(edge, key)

    # 7. Buy again, pass again.
    page.goto(portal + "/dashboard")
    assert "Your credits are used up" in page.content()
    buy(page, portal, shots, "")
    until_shown(page, portal, f"{PACK} credits</strong>")
    r = edge.get("/v1/things", key)
    assert (r.status, r.headers[HEADER]) == (200, str(PACK - 1))
    page.goto(portal + "/dashboard")
    text = page.content()
    assert text.count(">purchase<") == 2 and ">requests<" in text  # and the hour's use
    accessible(page)
    shots.take(page, "prepaid-ledger")

    # 8. Auto-recharge with the saved card: below 15 credits, buy the pack again, once.
    page.get_by_label("Auto-recharge with the card ending 4242").check()
    page.get_by_label("when the balance falls below (credits)").fill("15")
    page.get_by_role("button", name="Save auto-recharge").click()
    page.wait_for_url(portal + "/dashboard")
    account = edge.redis.get(schema.free_customer(digest("ada@example.com")))  # its account
    for _ in range(PACK - 1 - 14):  # 19 left: down to 14, below the mark
        assert edge.get("/v1/things", key).status == 200
    until(lambda: balance(edge, account) == 14 + PACK, "the recharge's credits")
    time.sleep(1.5)  # three more passes of the recharger: no second charge this crossing
    assert balance(edge, account) == 14 + PACK
    page.goto(portal + "/dashboard")
    assert (
        page.content().count(">purchase<") == 3 and "Last auto-recharge: charged" in page.content()
    )
    shots.take(page, "prepaid-auto-recharge")


def balance(edge: Edge, account: str) -> int:
    return int(edge.redis.hget(schema.account_state(account), "credits") or 0)


def buy(page: Any, portal: str, shots: Shots, shot: str) -> None:
    page.goto(portal + "/dashboard")
    page.get_by_role("button", name=BUY).click()
    page.wait_for_url(re.compile(r".*/pay/cs_test_.*"))
    if shot:
        accessible(page)
        shots.take(page, shot)
    page.get_by_role("button", name="Pay", exact=True).click()
    page.wait_for_url(portal + "/dashboard")


def until_shown(page: Any, portal: str, text: str) -> None:
    def shown() -> bool:
        page.goto(portal + "/dashboard")
        return text in page.content()

    until(shown, f"{text!r} on the dashboard")


def spend(edge: Edge, key: str) -> None:
    remaining = [edge.get("/v1/things", key) for _ in range(PACK)]
    assert [r.status for r in remaining] == [200] * PACK
    assert [r.headers[HEADER] for r in remaining] == [str(n) for n in range(PACK - 1, -1, -1)]
    r = edge.get("/v1/things", key)
    assert (r.status, r.json()["error"]["code"], r.headers[HEADER]) == (
        402,
        "credits_exhausted",
        "0",
    )
