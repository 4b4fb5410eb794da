"""The portal's credits for a prepaid account, against a real Redis: the dashboard shows the
balance, what a request spends, the packs and the latest ledger entries, and says when the
balance is used up or below zero; Buy starts Checkout only for the customer's own prepaid
account and a pack its tier sells, and says so when it cannot."""

from __future__ import annotations

import pytest

from tests.integration.test_portal import csrf_of, portal, signed_in  # noqa: F401 (fixture)
from tests.support import TEST_TIERS
from tollway.credits import Credits, Movement
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration

TIERS_PAYG = """
[tiers.payg]
requests_per_second = 10.0
burst = 10
monthly_quota = 0
over_quota = "block"
prepaid = true
credits_per_request = 2
[tiers.payg.credit_packs.starter]
credits = 1000
price_amount = 500
"""
TABLE = parse_tiers(TEST_TIERS + TIERS_PAYG, "t")
BUYER = "free_buyer"


@pytest.fixture
async def prepaid(portal):  # noqa: F811 (the fixture, by name)
    client, _, customer = portal
    client.portal_app.tiers = lambda: TABLE
    await client.keys.create("payg", BUYER)
    signed_in(client, BUYER)
    return client, customer


async def dashboard(client) -> str:
    r = await client.get("/dashboard")
    assert r.status == 200
    return await r.text()


async def test_the_dashboard_shows_the_balance_the_ledger_and_the_packs(prepaid, redis):
    client, _ = prepaid
    html = await dashboard(client)
    assert "0 credits</strong> (2 credits a request)" in html
    assert "Your credits are used up: requests are refused (402)" in html
    await Credits(redis).move(BUYER, "checkout:cs_1", 1000, Movement.PURCHASE, "pack starter", "s")
    html = await dashboard(client)
    assert "1,000 credits</strong>" in html and "used up" not in html
    assert "Buy 1,000 credits for $5.00" in html
    assert '<td data-label="What">purchase</td><td data-label="Credits">+1,000</td>' in html
    await Credits(redis).move(BUYER, "refund:pi_1", -1200, Movement.REFUND, "refunded", "s")
    html = await dashboard(client)
    assert "Your balance is -200 credits: below zero" in html


@pytest.mark.parametrize(
    ("account", "pack"), [(BUYER, "huge"), ("free_other", "starter"), ("", "")]
)
async def test_buy_refuses_what_is_not_the_customers_to_buy(prepaid, account, pack):
    client, _ = prepaid
    csrf = csrf_of(await dashboard(client))
    r = await client.post("/credits/buy", data={"csrf": csrf, "account": account, "pack": pack})
    assert r.status == 400 and "Buy credits from your account" in await r.text()


async def test_buy_without_the_webhook_service_says_checkout_is_unavailable(prepaid):
    """The fixture's backend is a closed port: a clear 502 page, never a 500."""
    client, _ = prepaid
    csrf = csrf_of(await dashboard(client))
    r = await client.post("/credits/buy", data={"csrf": csrf, "account": BUYER, "pack": "starter"})
    assert r.status == 502 and "Checkout is unavailable" in await r.text()
    r = await client.post("/credits/buy", data={"account": BUYER, "pack": "starter"})
    assert r.status == 403  # no CSRF token


async def test_auto_recharge_is_chosen_on_the_dashboard_for_a_saved_card_only(prepaid, redis):
    """The form shows only with a card on file; it saves the customer's choice for their own
    account and a pack the tier sells; a declined recharge is shown."""
    from tollway import schema
    from tollway.recharge import read, save_card

    client, _ = prepaid
    client.portal_app.tiers = lambda: parse_tiers(
        TEST_TIERS + TIERS_PAYG.replace("prepaid = true", "prepaid = true\nauto_recharge = true"),
        "t",
    )
    html = await dashboard(client)
    assert "Auto-recharge: buy a pack first" in html and "/credits/recharge" not in html
    await save_card(redis, BUYER, "cus_card", "pm_1", "4242")
    html = await dashboard(client)
    assert "Auto-recharge with the card ending 4242" in html
    form = {"csrf": csrf_of(html), "account": BUYER, "enabled": "1", "below": "250",
            "pack": "starter"}  # fmt: skip
    r = await client.post("/credits/recharge", data=form, allow_redirects=False)
    assert r.status == 303
    chosen = await read(redis, BUYER)
    assert (chosen.enabled, chosen.below, chosen.pack) == (True, 250, "starter")
    for bad in ({"pack": "huge"}, {"below": "-1"}, {"below": "9" * 5000}, {"below": "١٢"},
                {"account": "free_other"}):  # fmt: skip
        r = await client.post("/credits/recharge", data={**form, **bad})
        assert r.status == 400
    await redis.hset(schema.recharge(BUYER), mapping={"status": "declined", "at": "1800000000",
                                                      "error": "Your card was declined."})  # fmt: skip
    html = await dashboard(client)
    assert "did not go through: Your card was declined. Nothing was charged" in html
