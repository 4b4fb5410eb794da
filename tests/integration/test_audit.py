"""The audit log against a real Redis: every change through the lifecycle and the account
operations is recorded with its actor; reads filter and page newest first; the stream stays
within its bounds; a Redis that cannot take the entry never undoes the change."""

from __future__ import annotations

import json
import os

import pytest

from cli.main import main as cli
from devkit.stack import free_port
from tollway import schema
from tollway.accounts import Accounts
from tollway.audit import AuditLog
from tollway.clock import FixedClock, WallClock
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.lifecycle import Lifecycle
from tollway.redis_client import connect
from tollway.settings import RedisSettings, load

pytestmark = pytest.mark.integration


async def test_each_change_is_recorded_with_its_actor_newest_first(redis):
    """The CLI's changes are the "cli" actor's; the portal's are the customer's; account
    changes name the account; filters by target and actor."""
    keys = KeyStore(redis, KeyHasher())
    cli_side = Lifecycle(keys, WallClock())
    _, key = await cli_side.create("pro", "cus_a")
    await cli_side.suspend(key.key_id)
    await cli_side.resume(key.key_id)
    _, successor = await cli_side.rotate(key.key_id, 60)
    await cli_side.acting_as("customer:cus_a").revoke(successor.key_id)
    await cli_side.suspend_account("cus_a")
    await Accounts(keys).set_limits("cus_a", {"burst": 7}, clear=False)
    log = AuditLog(redis)
    entries = await log.entries()
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("cli", "limits_set", "account:cus_a"),
        ("cli", "suspended", "account:cus_a"),
        ("customer:cus_a", "revoked", f"key:{successor.key_id}"),
        ("cli", "rotated", f"key:{key.key_id}"),
        ("cli", "resumed", f"key:{key.key_id}"),
        ("cli", "suspended", f"key:{key.key_id}"),
        ("cli", "created", f"key:{key.key_id}"),
    ]
    assert entries[3].changes == {"successor": successor.key_id, "overlap_s": 60}
    assert entries[0].changes == {"clear": False, "limits": {"burst": 7}}
    mine = await log.entries(target=f"key:{key.key_id}")
    assert [e.action for e in mine] == ["rotated", "resumed", "suspended", "created"]
    assert [e.target for e in await log.entries(actor="customer:cus_a")] == [
        f"key:{successor.key_id}"
    ]
    assert [e.action for e in await log.entries(limit=2)] == ["limits_set", "suspended"]


async def test_the_stream_stays_within_its_length_and_age(redis):
    """MAXLEN and MINID trim approximately: whole stream nodes of 100 entries, so the stream
    holds at most its bound plus one node."""
    log = AuditLog(redis, max_entries=200)
    for i in range(1_500):
        await log.record("cli", "suspended", f"key:{i:016x}")
    assert 200 <= await redis.xlen(schema.AUDIT) <= 300
    later = FixedClock((WallClock().now() + 2 * 86_400) * 1000)
    aged = AuditLog(redis, max_entries=200, max_age_s=86_400, clock=later)
    await aged.record("cli", "resumed", "key:0000000000000001")
    assert await redis.xlen(schema.AUDIT) <= 100  # everything a day older than "now" goes


async def test_a_redis_that_cannot_take_the_entry_never_raises(caplog):
    """The change was made already: the failure is logged, not raised."""
    dead = connect(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    try:
        await AuditLog(dead).record("cli", "revoked", "key:0123456789abcdef")
    finally:
        await dead.aclose()
    assert "audit_write_failed" in caplog.text


def test_tollway_audit_prints_the_entries(redis_server, tiers_file, capsys):
    """`tollway audit --target key:<id> --json`: the key's entries as JSON lines."""
    url = ["--redis-url", redis_server, "--tiers", str(tiers_file)]
    assert cli(["keys", "create", "--tier", "pro", "--customer", "cus_cli", *url]) == 0
    key = capsys.readouterr().out.strip()
    assert cli(["keys", "suspend", key, *url]) == 0
    capsys.readouterr()
    hasher = KeyHasher(os.environ.get("TOLLWAY_KEY_PEPPER", "").encode())
    key_id = hasher.key_id(hasher.digest(key))
    assert cli(["audit", "--target", f"key:{key_id}", "--json", *url]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["actor"], x["action"]) for x in lines] == [("cli", "suspended"), ("cli", "created")]
    assert cli(["audit", "--since", "yesterday", *url]) == 1
    assert "not an ISO 8601" in capsys.readouterr().err


async def test_the_bounds_are_settings(redis):
    """TOLLWAY_AUDIT_MAX_ENTRIES and TOLLWAY_AUDIT_MAX_AGE_DAYS bound the stream; trimming is
    approximate (whole stream nodes of 100 entries), so the promise is: not much past it."""
    settings = load(RedisSettings, {"TOLLWAY_AUDIT_MAX_ENTRIES": "10",
                                    "TOLLWAY_AUDIT_MAX_AGE_DAYS": "0.5"})  # fmt: skip
    audit = AuditLog.configured(redis, settings)
    assert (audit.max_entries, audit.max_age_s) == (10, 43_200)
    for i in range(600):
        await audit.record("cli", "created", f"key:{i:016x}")
    assert await redis.xlen(schema.AUDIT) <= 10 + 200
