"""`tollway usage show`, `tollway metering dead-letters` and `tollway reconcile`, end to end."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from aiohttp import web

from cli.main import main as cli
from devkit.stack import free_port, port_open, wait_for
from devkit.standin.app import Fault, Standin
from devkit.standin.objects import World
from tollway.dead_letters import DeadLetters
from tollway.redis_client import connect_sync
from tollway.settings import StripeSettings

pytestmark = pytest.mark.integration
W = 60


@pytest.fixture
def standin_url():
    """A stand-in in a thread of its own, so the synchronous CLI can call it."""
    port = free_port()
    s = Standin(World(f"http://127.0.0.1:{port}"))
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(s.build())

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    wait_for(lambda: port_open(port), "stand-in", 10)
    yield f"http://127.0.0.1:{port}", s
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture
def run(redis_server, tiers_file, capsys, standin_url, monkeypatch):
    r = connect_sync(redis_server)
    r.flushdb()
    monkeypatch.setenv("TOLLWAY_STRIPE_API_BASE", standin_url[0])
    monkeypatch.setenv("TOLLWAY_USAGE_WINDOW_S", str(W))
    monkeypatch.setenv("TOLLWAY_METERING_ATTEMPTS", "1")

    def go(*argv: str) -> tuple[int, str, str]:
        code = cli([*argv, "--redis-url", redis_server, "--tiers", str(tiers_file)])
        out = capsys.readouterr()
        return code, out.out, out.err

    yield go, r, standin_url[1]
    r.close()


def drain(redis_server: str, tiers_file, base: str) -> None:
    from prometheus_client import CollectorRegistry

    from metering.daemon import Drainer
    from metering.ledger import Ledger
    from metering.metrics import MeteringMetrics
    from metering.retry import RateLimiter, Retrier
    from metering.sinks import MeterEventSink
    from tollway.key_store import KeyStore
    from tollway.keys import KeyHasher
    from tollway.redis_client import connect
    from tollway.stripe_api import Stripe
    from tollway.tiers import load_tiers

    async def go() -> None:
        redis = connect(redis_server)
        client = Stripe(StripeSettings(stripe_api_base=base), max_network_retries=0)
        table = load_tiers(tiers_file)
        sink = MeterEventSink(client, Retrier(RateLimiter(100), 1), W)
        await Drainer(
            KeyStore(redis, KeyHasher()),
            Ledger(redis, W, 0),
            sink,
            lambda: table,
            MeteringMetrics(CollectorRegistry()),
            1e9,
        ).drain()
        await client.aclose()
        await redis.aclose()

    asyncio.run(go())


def setup_usage(go, r, n: int = 5) -> tuple[str, int]:
    code, _, _ = go("keys", "create", "--tier", "free", "--customer", "cus_cli")
    assert code == 0
    key_id = next(k.split("{")[1].split("}")[0] for k in r.scan_iter(match="tw:{*}:key"))
    now = int(time.time())
    window = now - now % W - 2 * W
    r.hincrby(f"tw:{{{key_id}}}:usage", str(window), n)
    return key_id, window


def total(out: str) -> list[str]:
    """usage show's total line: counting, pending, sent."""
    (line,) = [line for line in out.splitlines() if line.startswith("total")]
    return line.split()[1:]


def test_usage_show_and_reconcile_follow_the_drain(run, redis_server, tiers_file, standin_url):
    """usage show moves counting → sent; reconcile is clean once Stripe has it all."""
    go, r, s = run
    setup_usage(go, r)
    code, out, _ = go("usage", "show", "--customer", "cus_cli")
    assert code == 0 and total(out) == ["5", "0", "0"]
    # Then each account's use against its limits in force (the test table's free tier).
    assert out.splitlines()[-1] == "account cus_cli: 0 of 1000 requests this period"
    s.world.meter(
        {
            "event_name": "api_requests",
            "display_name": "api",
            "default_aggregation": {"formula": "sum"},
        }
    )
    drain(redis_server, tiers_file, standin_url[0])
    code, out, _ = go("usage", "show", "--customer", "cus_cli")
    assert total(out) == ["0", "0", "5"]
    code, out, err = go("reconcile", "--customer", "cus_cli", "--since", "2020-01-01")
    assert code == 0, err
    assert out.splitlines()[1].split() == ["api_requests", "5", "0", "5", "5", "0"]


def test_reconcile_reports_drift(run, redis_server, tiers_file, standin_url):
    """If Stripe holds more than tollway sent, reconcile prints the drift and exits 1."""
    go, r, s = run
    setup_usage(go, r)
    s.world.meter(
        {
            "event_name": "api_requests",
            "display_name": "api",
            "default_aggregation": {"formula": "sum"},
        }
    )
    drain(redis_server, tiers_file, standin_url[0])
    s.world.meter_event({"event_name": "api_requests", "identifier": "stray",
                         "payload": {"stripe_customer_id": "cus_cli", "value": "2"}})  # fmt: skip
    code, out, _ = go("reconcile", "--customer", "cus_cli", "--since", "2020-01-01")
    assert code == 1 and out.splitlines()[1].split()[-2:] == ["7", "2"]


def test_dead_letters_list_retry_drop(run, redis_server, tiers_file, standin_url):
    """A refused event is listed; retry sends it with the same identifier; drop forgets it."""
    go, r, s = run
    setup_usage(go, r, n=3)
    s.faults.append(Fault(path="/v1/billing/meter_events", status=400))
    drain(redis_server, tiers_file, standin_url[0])
    code, out, _ = go("metering", "dead-letters")
    (letter,) = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and letter["customer"] == "cus_cli" and "Injected fault" in letter["reason"]
    assert go("metering", "dead-letters", "retry", letter["id"])[0] == 0
    drain(redis_server, tiers_file, standin_url[0])
    assert [e["identifier"] for e in s.world.meter_events] == [letter["id"]]
    assert go("metering", "dead-letters")[1] == ""
    code, _, err = go("metering", "dead-letters", "drop", "nope")
    assert code == 1 and "no dead letter nope" in err


async def test_meter_error_reports_from_stripe_become_dead_letters(redis):
    """v1.billing.meter.error_report_triggered (a thin event) is recorded, not refused."""
    from tests.support import TEST_TIERS
    from tollway import schema
    from tollway.key_store import KeyStore
    from tollway.keys import KeyHasher
    from tollway.tiers import parse_tiers
    from webhook.checkout import Checkouts
    from webhook.processor import Processor
    from webhook.subscription_states import SubscriptionStates

    keys = KeyStore(redis, KeyHasher())
    table = parse_tiers(TEST_TIERS, "t")
    proc = Processor(
        keys,
        SubscriptionStates(redis, keys),
        Checkouts(redis, keys, 900),
        DeadLetters(redis),
        lambda: table,
        60,
    )
    thin = {"id": "evt_thin1", "object": "v2.core.event", "type": "v1.billing.meter.error_report_triggered",
            "created": "2026-11-21T00:00:00.000Z", "related_object": {"id": "mtr_1", "type": "billing.meter"}}  # fmt: skip
    assert await proc.handle(thin) == "applied"
    rec = json.loads(await redis.hget(schema.DEAD_LETTERS, "evt_thin1"))
    assert rec["kind"] == "meter_error_report" and rec["event"]["related_object"]["id"] == "mtr_1"


def test_usage_show_lists_reported_amounts_and_refunds_carried(run):
    """Amounts the upstream reported show under their own meter; refunds waiting for a later
    window are said apart (they are not in any window yet)."""
    go, r, _ = run
    _, window = setup_usage(go, r, n=4)
    r.hset("tw:{cus_cli}:usage", mapping={f"a:{window}": 250, "carry": 2, "carry_at": window})
    code, out, _ = go("usage", "show", "--customer", "cus_cli")
    assert code == 0
    lines = out.splitlines()
    assert any(line.split()[:1] == ["amounts"] and line.split()[-3:] == ["250", "0", "0"]
               for line in lines), out  # fmt: skip
    carried = [line for line in lines if "refunds carried" in line]
    assert len(carried) == 1 and carried[0].endswith(": 2"), out
