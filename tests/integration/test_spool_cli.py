"""A store's identity, and `tollway usage spool list|load|drop` against a real Redis: a file
goes into a store only when the operator says so, each count once, and both actions are in
the audit log."""

from __future__ import annotations

import json
import time

import pytest

from cli.main import main as cli
from tollway import schema, spool
from tollway.redis_client import connect
from tollway.spool import SpoolRow
from tollway.store_identity import store_id

pytestmark = pytest.mark.integration


async def test_a_store_keeps_its_id_and_a_flushed_store_gets_a_new_one(redis):
    """The first read makes it; every later read, by any client, finds the same; FLUSHALL
    empties the store, and the next read makes a new id (spools of the old one are then
    another store's: an operator loads them with `tollway usage spool load`)."""
    await redis.flushall()
    first = await store_id(redis)
    assert first and await store_id(redis) == first
    await redis.flushall()
    assert await store_id(redis) not in ("", first)


@pytest.fixture
def run(redis_server, tiers_file, tmp_path, capsys):
    def go(*argv: str) -> tuple[int, str, str]:
        flags = ["--redis-url", redis_server, "--tiers", str(tiers_file)]
        try:
            code = cli(["usage", "spool", *argv, "--spool-dir", str(tmp_path), *flags])
        except SystemExit as exc:  # argparse refused the command line
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


async def usage_of(redis, source: str) -> int:
    return sum(int(v) for k, v in (await redis.hgetall(schema.usage(source))).items())


async def test_list_load_and_drop_a_spool_file(run, redis_server, tmp_path):
    redis = connect(redis_server)
    try:
        await redis.flushall()
        here = await store_id(redis)
        rows = [SpoolRow("acct_s", 600, 5, "w1"), SpoolRow("acct_s", 660, 2, "w2")]
        theirs = spool.write(tmp_path, "authz-1", "another-store", rows)
        unknown = spool.write(tmp_path, "authz-2", "", [SpoolRow("acct_u", 600, 9, "w3")])
        assert theirs is not None and unknown is not None

        code, out, _ = await_cli(run, "list")
        assert code == 0 and f"this store: {here}" in out
        assert theirs.name in out and "(another store)" in out and "(unknown store)" in out

        code, _, err = await_cli(run, "load", str(theirs))
        assert code != 0 and "--into-this-store" in err
        assert theirs.exists() and await usage_of(redis, "acct_s") == 0

        code, out, _ = await_cli(run, "load", theirs.name, "--into-this-store")
        assert code == 0 and "loaded 7 requests" in out
        assert not theirs.exists() and await usage_of(redis, "acct_s") == 7
        # A load cut short and run again adds nothing twice: each count has its write id.
        await spool.add_usage(redis, rows)
        assert await usage_of(redis, "acct_s") == 7

        code, _, err = await_cli(run, "drop", unknown.name)
        assert code != 0 and unknown.exists()  # --reason is required
        code, out, _ = await_cli(run, "drop", unknown.name, "--reason", "staging traffic")
        assert code == 0 and not unknown.exists() and await usage_of(redis, "acct_u") == 0

        entries = await redis.xrange(schema.AUDIT)
        actions = {e["action"]: json.loads(e["changes"]) for _, e in entries}
        assert actions["spool_loaded"]["requests"] == 7
        assert actions["spool_loaded"]["counted_for"] == "another-store"
        assert actions["spool_dropped"]["reason"] == "staging traffic"
    finally:
        await redis.aclose()


def await_cli(run, *argv: str) -> tuple[int, str, str]:
    """The CLI runs its own event loop: run it off this test's loop."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run, *argv).result()


async def test_usage_buffered_for_a_store_that_was_emptied_is_spooled_not_written(
    redis_server, tmp_path
):
    """The check engine buffered usage while its Redis was away; Redis came back emptied (a
    new store): the usage goes to a spool file of the old store, and the new one gets none."""
    from prometheus_client import CollectorRegistry

    from authz.engine import CheckEngine
    from authz.settings import AuthzSettings

    settings = AuthzSettings(redis_url=redis_server, spool_dir=tmp_path)
    engine = CheckEngine(settings, "authz-t", registry=CollectorRegistry())
    redis = connect(redis_server)
    try:
        await redis.flushall()
        await engine.start()
        old = engine.store_id
        engine.buffer.add("acct_b", time.time(), n=3)
        await redis.flushall()
        assert not await engine._same_store()
        (saved,) = spool.listing(tmp_path)
        assert (saved.store, saved.requests) == (old, 3) and engine.store_id != old
        await engine.stop()
        assert await usage_of(redis, "acct_b") == 0
        assert len(spool.listing(tmp_path)) == 1  # nothing more to spool
    finally:
        await redis.aclose()
