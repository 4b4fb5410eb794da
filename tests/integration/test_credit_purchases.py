"""Credit packs bought and refunded, through the real stripe SDK against the stand-in and the
webhook service's processor on a real Redis: a pack's Checkout (payment mode) credits the
account once however its events arrive; a refund takes back its share once; a declined card
credits nothing; bad requests for a Checkout are refused with a clear error."""

from __future__ import annotations

import pytest
import stripe
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from devkit.standin.payments import pay
from devkit.standin.validation import ParamError
from tollway import schema
from tollway.credits import Credits, Movement
from tollway.dead_letters import DeadLetters
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.tiers import parse_tiers
from webhook.app import WebhookApp
from webhook.checkout import Checkouts
from webhook.gate import Gate
from webhook.metrics import WebhookMetrics
from webhook.processor import Processor
from webhook.purchases import Purchases
from webhook.subscription_states import SubscriptionStates

pytestmark = pytest.mark.integration

TABLE = parse_tiers(
    """
[tiers.payg]
requests_per_second = 10.0
burst = 10
monthly_quota = 0
over_quota = "block"
prepaid = true
auto_recharge = true
[tiers.payg.credit_packs.starter]
credits = 1000
price_amount = 500

[tiers.pro]
requests_per_second = 10.0
burst = 10
monthly_quota = 0
over_quota = "bill"
stripe_prices = ["tollway_pro"]
""",
    "purchases",
)
ACCOUNT = "free_buyer"


@pytest.fixture
async def shop(standin, redis):
    """(stand-in, SDK client, processor, HTTP client of the webhook service) with the pack's
    one-time Price in Stripe and a prepaid account in Redis."""
    s, client, _ = standin
    prod = await client.v1.products.create_async({"name": "payg"})
    await client.v1.prices.create_async({"product": prod.id, "currency": "usd", "unit_amount": 500,
                                         "lookup_key": "tollway_payg_starter"})  # fmt: skip
    await redis.hset(schema.account_state(ACCOUNT), mapping={"tier": "payg", "customer": ACCOUNT})
    await redis.hset(schema.account_state("sub_pro"), mapping={"tier": "pro", "customer": "cus_p"})
    keys = KeyStore(redis, KeyHasher())
    checkouts = Checkouts(redis, keys, 900)
    purchases = Purchases(Credits(redis), client)
    proc = Processor(keys, SubscriptionStates(redis, keys), checkouts, DeadLetters(redis),
                     lambda: TABLE, 3600, stripe=client, purchases=purchases)  # fmt: skip
    app = WebhookApp(proc, checkouts, lambda: TABLE, ["whsec_t"], 300, 1 << 20,
                     WebhookMetrics(CollectorRegistry()), client, "u", "u",
                     Gate(redis, "", 0, 100), purchases, "http://portal/dashboard").build()  # fmt: skip
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        yield s, client, proc, http


async def buy(shop, card: str = "4242424242424242") -> dict:
    s, _, _, http = shop
    r = await http.post("/credits/checkout", json={"account": ACCOUNT, "pack": "starter",
                                                   "email": "a@example.com"})  # fmt: skip
    assert r.status == 200, await r.text()
    cs = s.world.get("checkout.session", (await r.json())["id"])
    assert (cs["mode"], cs["success_url"]) == ("payment", "http://portal/dashboard")
    return pay(s.world, cs, card)


def events(s, kind: str) -> list[dict]:
    return [e for e in s.world.events if e["type"] == kind]


async def balance(redis) -> int:
    return await Credits(redis).balance(ACCOUNT)


async def test_a_paid_pack_credits_the_account_once(shop, redis):
    s, _, proc, _ = shop
    cs = await buy(shop)
    (completed,) = events(s, "checkout.session.completed")
    assert completed["data"]["object"]["payment_status"] == "paid"
    assert await proc.handle(completed) == "applied"
    assert await proc.handle(completed) == "duplicate"  # delivered twice
    late = {**completed, "id": "evt_async", "type": "checkout.session.async_payment_succeeded"}
    assert await proc.handle(late) == "duplicate"  # the same session, by another event
    assert await balance(redis) == 1000
    (entry,) = await Credits(redis).ledger(ACCOUNT)
    assert (entry.kind, entry.credits, entry.ref) == (
        Movement.PURCHASE,
        1000,
        f"payment:{cs['payment_intent']}",
    )
    assert entry.actor == f"stripe:{completed['id']}" and entry.balance == 1000


async def test_refunds_take_back_their_share_once_in_any_order(shop, redis):
    s, client, proc, _ = shop
    cs = await buy(shop)
    await client.v1.refunds.create_async({"payment_intent": cs["payment_intent"], "amount": 250})
    await client.v1.refunds.create_async({"payment_intent": cs["payment_intent"]})
    half, whole = events(s, "charge.refunded")
    assert await proc.handle(half) == "applied"  # the refund arrives before the purchase
    assert await balance(redis) == -500
    assert await proc.handle(events(s, "checkout.session.completed")[0]) == "applied"
    assert await proc.handle(whole) == "applied"
    assert await proc.handle(half) == "duplicate"  # an older delivery: takes nothing more
    assert await proc.handle(whole) == "duplicate"
    assert await balance(redis) == 0
    assert (await Credits(redis).totals(ACCOUNT)).consistent
    with pytest.raises(stripe.InvalidRequestError, match="greater than unrefunded amount"):
        await client.v1.refunds.create_async({"payment_intent": cs["payment_intent"]})


async def test_a_refund_of_another_payment_is_ignored(shop, redis):
    """A charge that is not a credit pack's (its PaymentIntent names no account) moves nothing."""
    _, _, proc, _ = shop
    event = {"id": "evt_r", "type": "charge.refunded", "created": 1, "data": {"object": {
        "id": "ch_x", "payment_intent": None, "amount": 100, "amount_refunded": 100,
        "metadata": {}}}}  # fmt: skip
    assert await proc.handle(event) == "ignored"
    assert await balance(redis) == 0


async def test_a_declined_card_credits_nothing(shop, redis):
    s, _, _, _ = shop
    with pytest.raises(ParamError, match="declined"):
        await buy(shop, card="4000000000000002")
    assert events(s, "checkout.session.completed") == []
    assert await balance(redis) == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"account": ACCOUNT, "pack": "huge"}, 400, "invalid_request"),
        ({"account": "sub_pro", "pack": "starter"}, 400, "invalid_request"),
        ({"account": "free_nobody", "pack": "starter"}, 404, "not_found"),
        ({"account": "a{b}", "pack": "starter"}, 400, "invalid_request"),
        ({"account": ACCOUNT, "pack": "starter", "email": "nope"}, 400, "invalid_email"),
        ({"account": ACCOUNT}, 400, "invalid_json"),
        ([], 400, "invalid_json"),
    ],
)
async def test_a_checkout_for_credits_refuses_what_it_cannot_sell(shop, body, status, code):
    _, _, _, http = shop
    r = await http.post("/credits/checkout", json=body)
    assert (r.status, (await r.json())["error"]["code"]) == (status, code)


async def test_the_standin_refuses_a_recurring_price_in_payment_mode(standin):
    _, client, _ = standin
    prod = await client.v1.products.create_async({"name": "x"})
    monthly = await client.v1.prices.create_async({"product": prod.id, "currency": "usd",
                                                   "unit_amount": 1, "recurring": {"interval": "month"}})  # fmt: skip
    with pytest.raises(stripe.InvalidRequestError, match="passed a recurring price"):
        await client.v1.checkout.sessions.create_async(
            {"mode": "payment", "success_url": "u", "line_items": [{"price": monthly.id}]}
        )
    with pytest.raises(stripe.InvalidRequestError, match="can not pass `payment_intent_data`"):
        await client.v1.checkout.sessions.create_async(
            {
                "mode": "subscription",
                "success_url": "u",
                "line_items": [{"price": monthly.id}],
                "payment_intent_data": {"metadata": {"a": "b"}},
            }
        )


async def test_reconcile_matches_the_ledger_with_stripes_payments_and_refunds(
    shop, redis, redis_server, capsys
):
    """`tollway reconcile --credits`: clean when the ledger has every payment and refund
    Stripe has; exit 1 naming the payment when the ledger lacks one (a lost webhook)."""
    from cli.reconcile import reconcile_credits
    from metering.settings import MeteringSettings
    from tollway.settings import with_flags

    s, client, proc, _ = shop
    settings = with_flags(MeteringSettings, {}, {"redis_url": redis_server,
                                                 "stripe_api_base": s.world.base_url})  # fmt: skip
    first = await buy(shop)
    await proc.handle(events(s, "checkout.session.completed")[0])
    await client.v1.refunds.create_async({"payment_intent": first["payment_intent"], "amount": 100})
    await proc.handle(events(s, "charge.refunded")[0])
    assert await reconcile_credits(settings, ACCOUNT) == 0
    line = capsys.readouterr().out.splitlines()[1].split()
    assert line == [first["payment_intent"], "1000", "1000", "200", "200"]
    second = await buy(shop)  # paid, but its webhook never arrives
    assert await reconcile_credits(settings, ACCOUNT) == 1
    out = capsys.readouterr().out
    assert f"{second['payment_intent']} " in out and " 1000        0 " in out
