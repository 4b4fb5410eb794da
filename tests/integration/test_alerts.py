"""Usage alerts against a real Redis, a real SMTP sink (aiosmtpd) and a real HTTP receiver:
once per period and threshold across processes, signed, retried, and never dropped silently."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller

from cli.main import main as cli
from devkit.stack import free_port
from portal.alerter import Alerter
from portal.alerts import ID_HEADER, SIGNATURE_HEADER, verify
from portal.mail import Mailer
from tests.integration.test_portal import Sink, mails
from tests.support import TEST_TIERS
from tollway import schema
from tollway.keys import KeyHasher
from tollway.store import KeyStore
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration
TABLE = parse_tiers(TEST_TIERS, "t")
SECRET = "alert-secret-0123456789"


class Receiver:
    """The operator's endpoint: answers each POST with the next status (200 when none left)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.got: list[tuple[bytes, dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((await request.read(), dict(request.headers)))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def parts(redis):
    sink = Sink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    keys = KeyStore(redis, KeyHasher())
    _, record = await keys.create("free", "cus_alerts")  # monthly_quota 1000
    yield keys, record.account, sink, smtp.port
    smtp.stop()


def alerter(keys, smtp_port: int, url: str, attempts: int = 3) -> Alerter:
    async def email_of(customer: str) -> str | None:
        return "ops-test@example.com" if customer == "cus_alerts" else None

    return Alerter(keys, lambda: TABLE, Mailer("127.0.0.1", smtp_port, "portal@test"), email_of,
                   url, SECRET, attempts=attempts, retry_s=1.0)  # fmt: skip


async def use(keys, account: str, used: int) -> None:
    await keys.redis.hset(schema.account_state(account),
                          mapping={"q_used": used, "q_period": int(time.time())})  # fmt: skip


async def test_each_threshold_alerts_once_across_processes_signed(parts):
    keys, account, sink, smtp_port = parts
    receiver = Receiver([500])  # the first POST fails: retried on a later pass
    server = TestServer(web.Application(), host="127.0.0.1")
    server.app.router.add_post("/alerts", receiver.handle)
    await server.start_server()
    url = str(server.make_url("/alerts"))
    a, b = alerter(keys, smtp_port, url), alerter(keys, smtp_port, url)  # two portal processes
    try:
        await use(keys, account, 799)
        await a.run_once()
        assert receiver.got == [] and sink.messages == []  # 79.9 %: nothing
        await use(keys, account, 800)
        now = int(time.time())
        for alert in (a, b, a, b):
            await alert.run_once(now)
        (to, text), = await mails(sink)  # fmt: skip
        assert to == "ops-test@example.com" and "800 of its 1,000 requests" in text
        assert len(receiver.got) == 1  # answered 500; not yet retried (backoff)
        for alert in (a, b):
            await alert.run_once(now + 2)
        assert len(receiver.got) == 2 and len(sink.messages) == 1  # retried once, mail not again
        raw, headers = receiver.got[1]
        assert verify(raw, headers[SIGNATURE_HEADER], SECRET, int(time.time()))
        assert not verify(raw + b" ", headers[SIGNATURE_HEADER], SECRET, int(time.time()))
        event = json.loads(raw)
        assert event["id"] == headers[ID_HEADER] and event["type"] == "usage.threshold_reached"
        assert event["data"] | {"period_start": 0, "period_end": 0} == {
            "account": account, "customer": "cus_alerts", "tier": "free", "threshold_percent": 80,
            "used": 800, "quota": 1000, "period_start": 0, "period_end": 0}  # fmt: skip
        # 100 %: one more of each, whichever process gets there.
        await use(keys, account, 1000)
        for alert in (b, a, b):
            await alert.run_once()
        await mails(sink, 2)
        assert [json.loads(r)["data"]["threshold_percent"] for r, _ in receiver.got] == [
            80,
            80,
            100,
        ]
        assert len(sink.messages) == 2 and "1,000 of its 1,000 requests" in sink.messages[1][1]
    finally:
        await a.close()
        await b.close()
        await server.close()


async def fail_webhook(parts, caplog) -> dict:
    """Raise an alert whose operator URL never answers: its webhook fails after 3 attempts."""
    keys, account, sink, smtp_port = parts
    dead = f"http://127.0.0.1:{free_port()}/alerts"  # nothing listens
    a = alerter(keys, smtp_port, dead, attempts=3)
    await use(keys, account, 900)
    now = int(time.time())
    caplog.set_level(logging.INFO, logger="tollway.portal.alerts")
    try:
        for step in range(0, 20, 1):
            await a.run_once(now + step)
    finally:
        await a.close()
    await mails(sink)
    assert len(sink.messages) == 1  # the email went; only the webhook failed
    records = [json.loads(v) for v in (await keys.redis.hgetall(schema.alerts(account))).values()]
    (record,) = records
    assert (record["email"], record["webhook"], record["attempts"]) == ("sent", "failed", 3)
    assert "ClientConnectorError" in record["error"]
    undelivered = [r for r in caplog.records if r.getMessage() == "alert_undelivered"]
    retries = [r for r in caplog.records if r.getMessage() == "alert_retry"]
    assert len(undelivered) == 1 and len(retries) == 2
    return record


async def test_an_operator_url_that_does_not_answer_is_retried_then_logged(parts, caplog):
    record = await fail_webhook(parts, caplog)
    assert record["alert"]["threshold_percent"] == 80


async def test_the_operator_lists_failed_alerts_and_sends_one_again(parts, caplog, redis_server,
                                                                   capsys):  # fmt: skip
    keys, _, sink, smtp_port = parts
    await fail_webhook(parts, caplog)
    capsys.readouterr()
    assert await asyncio.to_thread(cli, ["portal", "alerts", "failed", "--redis-url",
                                         redis_server]) == 0  # fmt: skip
    (line,) = capsys.readouterr().out.splitlines()
    failed = json.loads(line)
    assert failed["webhook"] == "failed" and failed["email"] == "sent"
    assert await asyncio.to_thread(cli, ["portal", "alerts", "retry", "alert_nope",
                                         "--redis-url", redis_server]) == 1  # fmt: skip
    assert await asyncio.to_thread(cli, ["portal", "alerts", "retry", failed["id"],
                                         "--redis-url", redis_server]) == 0  # fmt: skip
    # The operator's endpoint is back: the next pass sends the webhook, and only the webhook.
    receiver = Receiver([])
    server = TestServer(web.Application(), host="127.0.0.1")
    server.app.router.add_post("/alerts", receiver.handle)
    await server.start_server()
    a = alerter(keys, smtp_port, str(server.make_url("/alerts")))
    try:
        await a.run_once()
    finally:
        await a.close()
        await server.close()
    assert len(receiver.got) == 1 and json.loads(receiver.got[0][0])["id"] == failed["id"]
    assert len(sink.messages) == 1
    assert await asyncio.to_thread(cli, ["portal", "alerts", "failed", "--redis-url",
                                         redis_server]) == 0  # fmt: skip
    assert "failed" not in capsys.readouterr().out


async def test_an_unreadable_alert_record_is_logged_and_the_others_still_go(parts, caplog):
    keys, account, sink, smtp_port = parts
    await keys.redis.hset(schema.alerts(account), "garbage", "{not json")
    a = alerter(keys, smtp_port, "")
    await use(keys, account, 850)
    caplog.set_level(logging.INFO, logger="tollway.portal.alerts")
    try:
        await a.run_once()
        await a.run_once()
    finally:
        await a.close()
    assert len(await mails(sink)) == 1
    assert [r.getMessage() for r in caplog.records].count("alert_unreadable") == 2
