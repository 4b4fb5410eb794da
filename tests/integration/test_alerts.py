"""Usage alerts against a real Redis, a real SMTP sink (aiosmtpd) and a real HTTP receiver:
once per period and threshold across processes, signed, retried, and never dropped silently."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller

from authz.breaker import Breaker
from authz.check_reply import Code
from authz.check_store import ScriptCall, StoreCheck
from authz.check_tiers import CheckTiers
from authz.redis_check_store import RedisCheckStore
from cli.main import main as cli
from devkit.stack import free_port
from portal.alerter import Alerter
from portal.alerts import ID_HEADER, SIGNATURE_HEADER, verify
from portal.mail import Mailer
from tests.integration.test_portal import Sink, mails
from tests.support import TEST_TIERS
from tollway import schema
from tollway.clock import RedisTime
from tollway.key_store import KeyStore, text
from tollway.keys import KeyHasher
from tollway.records import KeyRecord
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration
TABLE = parse_tiers(TEST_TIERS, "t")
ARGS = CheckTiers(TABLE).tier_args(None)
SECRET = "alert-secret-0123456789"


class Receiver:
    """The operator's endpoint: answers each POST with the next status (200 when none left)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.got: list[tuple[bytes, dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((await request.read(), dict(request.headers)))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


class CountedKey:
    """A key whose requests are counted by the real check.lua."""

    def __init__(self, redis, pipe, record: KeyRecord) -> None:
        self.redis, self.record = redis, record
        self.store = RedisCheckStore(pipe, redis, RedisTime(), Breaker(3, 1.0), 5.0, 60)


@pytest.fixture
async def parts(redis, pipe):
    sink = Sink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    keys = KeyStore(redis, KeyHasher())
    _, record = await keys.create("free", "cus_alerts")  # monthly_quota 1000
    yield keys, record.account, sink, smtp.port, CountedKey(redis, pipe, record)
    smtp.stop()


def alerter(keys, smtp_port: int, url: str, attempts: int = 3) -> Alerter:
    async def email_of(customer: str) -> str | None:
        return "ops-test@example.com" if customer == "cus_alerts" else None

    return Alerter(keys, lambda: TABLE, Mailer("127.0.0.1", smtp_port, "portal@test"), email_of,
                   url, SECRET, attempts=attempts, retry_s=1.0)  # fmt: skip


async def use(key: CountedKey, used: int) -> None:
    """Bring the key's account's quota count up to ``used`` through check.lua itself: one
    lease settlement counts many requests in one call, as it does in lease mode."""
    have = int(await key.redis.hget(schema.account_state(key.record.account), "q_used") or 0)
    if used > have:
        r = key.record
        call = StoreCheck(r.key_id, r.hash, 0, ARGS, used - have, 0, ScriptCall.SETTLE,
                          secrets.token_hex(8))  # fmt: skip
        assert (await key.store.check(call)).code is Code.OK


async def test_each_threshold_alerts_once_across_processes_signed(parts):
    keys, account, sink, smtp_port, key = parts
    receiver = Receiver([500])  # the first POST fails: retried on a later pass
    server = TestServer(web.Application(), host="127.0.0.1")
    server.app.router.add_post("/alerts", receiver.handle)
    await server.start_server()
    url = str(server.make_url("/alerts"))
    a, b = alerter(keys, smtp_port, url), alerter(keys, smtp_port, url)  # two portal processes
    try:
        await use(key, 799)
        await a.run_once()
        assert receiver.got == [] and sink.messages == []  # 79.9 %: nothing
        await use(key, 800)
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
        await use(key, 1000)
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
    keys, account, sink, smtp_port, key = parts
    dead = f"http://127.0.0.1:{free_port()}/alerts"  # nothing listens
    a = alerter(keys, smtp_port, dead, attempts=3)
    await use(key, 900)
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
    keys, _, sink, smtp_port, _ = parts
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
    keys, account, sink, smtp_port, key = parts
    await keys.redis.hset(schema.alerts(account), "garbage", "{not json")
    a = alerter(keys, smtp_port, "")
    await use(key, 850)
    caplog.set_level(logging.INFO, logger="tollway.portal.alerts")
    try:
        await a.run_once()
        await a.run_once()
    finally:
        await a.close()
    assert len(await mails(sink)) == 1
    assert [r.getMessage() for r in caplog.records].count("alert_unreadable") == 2


class LateLocker:
    """A second process's Redis client that, just before it takes an alert's lock, lets the
    first process deliver the alert and release the lock: the race where the second process
    listed the alert as pending before the first marked it sent."""

    def __init__(self, redis, first: Alerter, account: str) -> None:
        self._redis, self._first, self._account = redis, first, account

    def __getattr__(self, name: str):
        return getattr(self._redis, name)

    async def set(self, *args, **kwargs):
        await self._first.deliver(self._account, int(time.time()))
        return await self._redis.set(*args, **kwargs)


async def test_a_process_that_listed_an_alert_before_another_delivered_it_does_not_send_it_again(
    parts,
):
    keys, account, sink, smtp_port, key = parts
    a, b = alerter(keys, smtp_port, ""), alerter(keys, smtp_port, "")
    await use(key, 800)
    try:
        assert await a.raise_due(account, int(time.time()))
        b.redis = LateLocker(keys.redis, a, account)
        await b.deliver(account, int(time.time()))
    finally:
        await a.close()
        await b.close()
    assert len(await mails(sink)) == 1  # a's; b re-read the record under the lock: sent
    (raw,) = (await keys.redis.hgetall(schema.alerts(account))).values()
    assert json.loads(raw)["email"] == "sent"
    assert await keys.redis.keys(schema.alert_lock(account, "*")) == []


async def test_a_lock_lost_during_a_send_is_left_to_its_new_holder(parts, caplog):
    """The lock expired during a slow send and another process took it: this process neither
    deletes that process's lock nor writes over its record."""
    keys, account, sink, smtp_port, key = parts
    a = alerter(keys, smtp_port, "")
    await use(key, 800)
    assert await a.raise_due(account, int(time.time()))
    (field,) = await keys.redis.hkeys(schema.alerts(account))
    lock = schema.alert_lock(account, text(field))
    send = a.mailer.send

    async def slow_send(*args):
        await keys.redis.set(lock, "another-process", px=30_000)  # ours expired; theirs now
        await send(*args)

    a.mailer.send = slow_send  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="tollway.portal.alerts")
    try:
        await a.deliver(account, int(time.time()))
    finally:
        await a.close()
    assert len(await mails(sink)) == 1
    assert text(await keys.redis.get(lock)) == "another-process"
    assert json.loads(await keys.redis.hget(schema.alerts(account), field))["email"] == "pending"
    assert "alert_lock_lost" in [r.getMessage() for r in caplog.records]


async def test_of_several_portal_processes_one_makes_each_intervals_pass(parts):
    """Two processes' loops: the keyspace is scanned once an interval, not once per process.
    (Each pass takes ``alert-pass`` for one interval; Redis expires it, so two passes start at
    least an interval apart, less the time a SET's reply took to arrive: half is a bound a
    busy machine keeps, and two passes at once, as without the pass, break it.)"""
    keys, _, _, smtp_port, _ = parts
    interval = 0.3
    starts: list[float] = []
    a, b = alerter(keys, smtp_port, ""), alerter(keys, smtp_port, "")

    async def a_pass(now: int | None = None) -> None:
        starts.append(time.monotonic())

    for each in (a, b):
        each.run_once = a_pass  # type: ignore[method-assign]
    stop = asyncio.Event()
    loops = [asyncio.create_task(each.run(interval, stop)) for each in (a, b)]
    await asyncio.sleep(4 * interval)
    stop.set()
    await asyncio.gather(*loops)
    assert starts, "a pass was made"
    gaps = [later - earlier for earlier, later in itertools.pairwise(sorted(starts))]
    assert all(gap >= interval / 2 for gap in gaps), gaps
