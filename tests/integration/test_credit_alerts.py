"""A prepaid account's balance alerts against a real Redis, a real SMTP sink and a real HTTP
receiver: low and used up, each once per crossing (again after a top-up), mailed and POSTed
signed, as the usage alerts are."""

from __future__ import annotations

import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from portal.alerter import Alerter, stored
from portal.alerts import ID_HEADER, SIGNATURE_HEADER, verify
from portal.mail import Mailer
from tests.integration.test_alerts import SECRET, Receiver
from tests.integration.test_portal import Sink, mails
from tollway import schema
from tollway.credits import Credits, Movement
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration
TABLE = parse_tiers(
    """
[tiers.payg]
requests_per_second = 10.0
burst = 10
monthly_quota = 0
over_quota = "block"
prepaid = true
credits_per_request = 2
low_credits = 100
""",
    "t",
)
ACCOUNT = "free_alerts"


@pytest.fixture
async def setup(redis):
    from aiosmtpd.controller import Controller

    from devkit.stack import free_port

    sink = Sink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    receiver = Receiver([])
    server = TestServer(web.Application(), host="127.0.0.1")
    server.app.router.add_post("/alerts", receiver.handle)
    await server.start_server()
    keys = KeyStore(redis, KeyHasher())
    await keys.create("payg", ACCOUNT)

    async def email_of(customer: str) -> str | None:
        return "buyer@example.com" if customer == ACCOUNT else None

    alerter = Alerter(keys, lambda: TABLE, Mailer("127.0.0.1", smtp.port, "portal@test"),
                      email_of, str(server.make_url("/alerts")), SECRET, attempts=3,
                      retry_s=1.0)  # fmt: skip
    yield alerter, Credits(redis), sink, receiver
    await alerter.close()
    await server.close()
    smtp.stop()


async def spend_to(redis, balance: int) -> None:
    """Set the balance as requests would leave it (the alerter reads only the balance)."""
    await redis.hset(schema.account_state(ACCOUNT), "credits", balance)


async def test_low_and_used_up_alert_once_per_crossing(setup, redis):
    alerter, credits, sink, receiver = setup
    await credits.move(ACCOUNT, "payment:pi_1", 150, Movement.PURCHASE, "pack", "s")
    await alerter.run_once()
    assert receiver.got == []  # 150: above the low mark
    await spend_to(redis, 90)
    for _ in range(3):
        await alerter.run_once(int(time.time()))
    (to, body), = await mails(sink)  # fmt: skip
    assert to == "buyer@example.com" and "balance is 90 credits, below 100" in body
    (raw, headers), = receiver.got  # fmt: skip
    assert verify(raw, headers[SIGNATURE_HEADER], SECRET, int(time.time()))
    event = json.loads(raw)
    assert event["type"] == "credits.low" and event["id"] == headers[ID_HEADER]
    assert event["data"]["balance"] == 90 and event["data"]["threshold"] == 100
    await spend_to(redis, 1)  # below one request's 2 credits: used up
    await alerter.run_once(int(time.time()))
    assert [json.loads(r)["type"] for r, _ in receiver.got] == ["credits.low", "credits.exhausted"]
    assert "requests are refused (402 credits_exhausted)" in (await mails(sink, 2))[1][1]
    # A top-up, then falling again: a new crossing, alerted again (once).
    await credits.move(ACCOUNT, "payment:pi_2", 500, Movement.PURCHASE, "pack", "s")
    await alerter.run_once(int(time.time()))
    assert len(receiver.got) == 2  # 501: nothing due
    await spend_to(redis, 50)
    await alerter.run_once(int(time.time()))
    await alerter.run_once(int(time.time()))
    assert [json.loads(r)["type"] for r, _ in receiver.got][2:] == ["credits.low"]
    ids = {r["id"] for r in await stored(redis)}
    assert len(ids) == 3 and all("_credits_" in i for i in ids)
