"""Auto-recharge through the real stripe SDK against the stand-in, the webhook service's
processor and a real Redis: the card a pack's Checkout saved is charged off-session once per
crossing below the customer's mark, also with several portal processes at once; its credits
arrive once with payment_intent.succeeded; a card declined off-session credits nothing, is
not charged again for that crossing, and the customer is mailed."""

from __future__ import annotations

import asyncio

import pytest
from aiosmtpd.controller import Controller

from devkit.stack import free_port
from portal.mail import Mailer
from portal.recharger import Recharger
from tests.integration.test_credit_purchases import ACCOUNT, TABLE, buy, events, shop  # noqa: F401
from tests.integration.test_portal import Sink, mails
from tollway.credits import Credits, Movement
from tollway.recharge import choose, read

pytestmark = pytest.mark.integration


@pytest.fixture
def sink():
    got = Sink()
    smtp = Controller(got, hostname="127.0.0.1", port=free_port())
    smtp.start()
    yield got, smtp.port
    smtp.stop()


def recharger(redis, client, port: int) -> Recharger:
    async def email_of(customer: str) -> str | None:
        return "buyer@example.com" if customer == ACCOUNT else None

    return Recharger(redis, client, lambda: TABLE, Mailer("127.0.0.1", port, "p@test"), email_of)


async def bought(shop, card: str) -> dict:  # noqa: F811
    """A pack bought with ``card`` and its webhook applied: 1,000 credits, the card saved."""
    s, _, proc, _ = shop
    cs = await buy(shop, card)
    completed = [e for e in events(s, "checkout.session.completed")
                 if e["data"]["object"]["id"] == cs["id"]]  # fmt: skip
    assert await proc.handle(completed[0]) == "applied"
    return cs


async def spend_to(redis, balance: int) -> None:
    credits = Credits(redis)
    have = await credits.balance(ACCOUNT)
    await credits.adjust(
        ACCOUNT, balance - have, "spent", "test", f"spend-{have}", Movement.ADJUSTMENT
    )


async def test_the_saved_card_is_charged_once_per_crossing(shop, redis, sink):  # noqa: F811
    s, client, proc, _ = shop
    await bought(shop, "4242424242424242")
    chosen = await read(redis, ACCOUNT)
    assert chosen.card_on_file and chosen.last4 == "4242" and not chosen.enabled
    await choose(redis, ACCOUNT, True, 500, "starter")
    portals = [recharger(redis, client, sink[1]) for _ in range(5)]
    assert await portals[0].run_once() == {ACCOUNT: "above"}
    await spend_to(redis, 100)
    outcomes = await asyncio.gather(*(p.consider(ACCOUNT) for p in portals))
    assert sorted(outcomes) == ["already"] * 4 + ["charged"]
    intents = [e for e in events(s, "payment_intent.succeeded")]
    assert len(intents) == 2  # the Checkout's, and one recharge
    assert intents[1]["data"]["object"]["amount"] == 500
    assert await portals[1].consider(ACCOUNT) == "already"  # credits not in yet: no second
    for event in intents:  # the Checkout's own payment credits nothing more
        await proc.handle(event)
    assert await Credits(redis).balance(ACCOUNT) == 1100
    assert await portals[2].consider(ACCOUNT) == "above"
    await spend_to(redis, 10)  # a new crossing, after the recharge's top-up
    assert await portals[3].consider(ACCOUNT) == "charged"
    assert len(events(s, "payment_intent.succeeded")) == 3
    assert (await read(redis, ACCOUNT)).status == "charged"
    assert (await Credits(redis).totals(ACCOUNT)).consistent


async def test_a_card_declined_off_session_credits_nothing_and_is_mailed(shop, redis, sink):  # noqa: F811
    s, client, proc, _ = shop
    await bought(shop, "4000002760003184")  # authenticates at Checkout, not off-session
    await choose(redis, ACCOUNT, True, 500, "starter")
    await spend_to(redis, 100)
    portal = recharger(redis, client, sink[1])
    assert await portal.consider(ACCOUNT) == "declined"
    assert await portal.consider(ACCOUNT) == "already"  # not tried again this crossing
    failed = events(s, "payment_intent.payment_failed")
    assert len(failed) == 1 and await proc.handle(failed[0]) == "ignored"
    assert await Credits(redis).balance(ACCOUNT) == 100
    chosen = await read(redis, ACCOUNT)
    assert chosen.status == "declined" and "requires authentication" in chosen.error
    (to, text), = await mails(sink[0])  # fmt: skip
    assert to == "buyer@example.com" and "Nothing was charged" in text


async def test_auto_recharge_needs_a_card_on_file_and_a_mark(redis):
    from tollway.errors import InvalidInput

    with pytest.raises(InvalidInput, match="buy a pack first"):
        await choose(redis, "free_nocard", True, 100, "starter")
    with pytest.raises(InvalidInput, match="the mark must be from 1"):
        await choose(redis, "free_nocard", False, 0, "starter")
