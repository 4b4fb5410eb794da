"""authz's lean check-path client (authz/redis_node.py, authz/redis_cluster.py) against a real
redis-server and a real 3-master Redis Cluster: split replies, error replies, NOSCRIPT after
SCRIPT FLUSH, MOVED and ASK, a connection dropped mid-pipeline, and a primary killed and
replaced by its replica."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from authz.breaker import Breaker
from authz.check_reply import Code
from authz.check_store import StoreCheck, StoreUnavailable
from authz.check_tiers import CheckTiers
from authz.redis_check_store import KnownKey, RedisCheckStore
from authz.redis_cluster import RedisClusterPipe, slot_of
from authz.redis_node import ReplyError
from authz.redis_pipe import NodePipe, open_pipe
from devkit.cluster import LocalCluster
from devkit.stack import free_port
from tests.support import TEST_TIERS
from tollway import schema
from tollway.clock import RedisTime
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.records import KeyRecord
from tollway.redis_client import connect
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.integration

ARGS = CheckTiers(parse_tiers(TEST_TIERS, "test")).tier_args(None)


class Proxy:
    """A TCP proxy in front of one Redis node. ``chunk``: forward the node's replies this many
    bytes at a time; ``cut_after``: once this many more reply bytes have gone through, close
    both sides of that connection (once; later connections pass everything)."""

    def __init__(self, port: int, chunk: int = 0) -> None:
        self.target = port
        self.chunk = chunk
        self.cut_after: int | None = None
        self.port = 0
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Proxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        node_r, node_w = await asyncio.open_connection("127.0.0.1", self.target)

        async def up() -> None:
            while data := await client_r.read(65536):
                node_w.write(data)
                await node_w.drain()

        async def down() -> None:
            while data := await node_r.read(65536):
                if self.cut_after is not None:
                    if len(data) >= self.cut_after:
                        client_w.write(data[: self.cut_after])
                        await client_w.drain()
                        self.cut_after = None
                        return  # cut: both sides close below
                    self.cut_after -= len(data)
                step = self.chunk or len(data)
                for i in range(0, len(data), step):
                    client_w.write(data[i : i + step])
                    await client_w.drain()
                    if self.chunk:
                        await asyncio.sleep(0)

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (client_w, node_w):
            w.transport.abort()


def account_slot(rec: KeyRecord) -> int:
    """The slot a key's checks run in: its account's."""
    return slot_of(("EVALSHA", "", 1, schema.account_state(rec.account)))


async def node_port(pipe, rec: KeyRecord) -> int:
    """The port of the Redis node that serves the slot ``rec``'s checks run in."""
    if isinstance(pipe, RedisClusterPipe):
        await pipe.refresh()
        address = pipe._slots[account_slot(rec)]
        assert address is not None
        return int(address.rsplit(":", 1)[1])
    return pipe.port


def limiter(pipe, redis, breaker: Breaker | None = None, *known: KeyRecord) -> RedisCheckStore:
    """A limiter; the accounts of ``known`` keys already learnt (as after their first check),
    so that a pipe to one node sends it nothing but those keys' checks."""
    lim = RedisCheckStore(pipe, redis, RedisTime(), breaker or Breaker(1000, 1.0), deadline_s=5.0,
                  usage_window_s=60)  # fmt: skip
    lim.keys.update({rec.key_id: KnownKey(rec.account, "") for rec in known})
    return lim


async def used(redis, rec: KeyRecord) -> int:
    return sum(map(int, (await redis.hgetall(schema.usage(rec.account))).values()))


async def test_replies_split_byte_by_byte_are_matched_in_order(redis, pipe):
    """The node's replies arrive one byte per read: every check still gets its own answer."""
    _, rec = await KeyStore(redis, KeyHasher()).create("business", "cus_1")
    async with Proxy(await node_port(pipe, rec), chunk=1) as proxy:
        node = NodePipe("127.0.0.1", proxy.port, 5.0)
        lim = limiter(node, redis, None, rec)
        outs = await asyncio.gather(
            *(lim.check(StoreCheck(rec.key_id, rec.hash, 1, ARGS)) for _ in range(30))
        )
        await node.aclose()
    assert [o.code for o in outs] == [Code.OK] * 30
    assert sorted(o.quota_used for o in outs) == list(range(1, 31))
    assert await used(redis, rec) == 30


async def test_an_error_reply_answers_its_own_command_only(pipe):
    """Error replies come back in their command's place; the commands around them succeed."""
    key = schema.key_directory("0123456789abcdef")
    replies = await pipe.execute([
        ("EVAL", "return 1", 1, key),
        ("EVAL", "return redis.error_reply('boom')", 1, key),
        ("EVAL", "return 'two'", 1, key),
    ])  # fmt: skip
    assert replies[0] == 1 and replies[2] == "two"
    assert isinstance(replies[1], ReplyError) and str(replies[1]).endswith("boom")


async def test_noscript_after_script_flush_loads_the_script_again(redis, pipe):
    _, rec = await KeyStore(redis, KeyHasher()).create("business", "cus_1")
    lim = limiter(pipe, redis)
    assert (await lim.check(StoreCheck(rec.key_id, rec.hash, 1, ARGS))).code is Code.OK
    nodes = list(pipe.nodes.values()) if isinstance(pipe, RedisClusterPipe) else [pipe]
    for node in nodes:
        assert await node.execute([("SCRIPT", "FLUSH")]) == ["OK"]
    outs = await asyncio.gather(
        *(lim.check(StoreCheck(rec.key_id, rec.hash, 1, ARGS)) for _ in range(5))
    )
    assert [o.code for o in outs] == [Code.OK] * 5
    assert await used(redis, rec) == 6


async def test_a_connection_dropped_mid_pipeline_answers_every_check_once(redis, pipe):
    """The connection breaks after part of a 30-check pipeline's replies: each check gets its
    answer or a clear store error, nothing is sent again, and each is counted exactly once
    (Redis ran all 30). The next check reconnects."""
    _, rec = await KeyStore(redis, KeyHasher()).create("business", "cus_1")
    async with Proxy(await node_port(pipe, rec)) as proxy:
        node = NodePipe("127.0.0.1", proxy.port, 5.0)
        lim = limiter(node, redis, None, rec)
        # Warm: the script is loaded and the key's tier learned, so the 30 go in one pipeline.
        assert (await lim.check(StoreCheck(rec.key_id, rec.hash, 1, ARGS))).code is Code.OK
        proxy.cut_after = 600
        outs = await asyncio.gather(
            *(lim.check(StoreCheck(rec.key_id, rec.hash, 1, ARGS)) for _ in range(30)),
            return_exceptions=True,
        )
        answered = [o for o in outs if not isinstance(o, BaseException)]
        errors = [o for o in outs if isinstance(o, BaseException)]
        assert all(isinstance(e, StoreUnavailable) and "connection lost" in str(e) for e in errors)
        assert 0 < len(answered) < 30 and all(o.code is Code.OK for o in answered)
        assert await used(redis, rec) == 1 + 30
        assert (await lim.check(StoreCheck(rec.key_id, rec.hash, 1, ARGS))).code is Code.OK
        assert proxy.connections == 2
        await node.aclose()
        await asyncio.sleep(0)  # the proxy's handlers see the close
    assert await used(redis, rec) == 1 + 30 + 1


async def test_unreachable_node_backs_off_then_reconnects():
    """A refused connect fails at once, and later calls fail fast until the backoff ends."""
    port = free_port()
    node = NodePipe("127.0.0.1", port, 1.0)
    with pytest.raises(ConnectionError, match="cannot connect"):
        await node.execute([("PING",)])
    with pytest.raises(ConnectionError, match="next try in"):
        await node.execute([("PING",)])
    await node.aclose()


@pytest.fixture
def cluster_pipe(pipe, redis_mode: str) -> RedisClusterPipe:
    if redis_mode != "cluster":
        pytest.skip("Redis Cluster only (--redis-mode cluster)")
    assert isinstance(pipe, RedisClusterPipe)
    return pipe


async def test_moved_follows_the_slot_and_fixes_the_map(redis, cluster_pipe):
    """With the slot map wrong for one slot, the node answers MOVED: the check is sent to the
    right node, and the map is corrected."""
    pipe = cluster_pipe
    _, rec = await KeyStore(redis, KeyHasher()).create("business", "cus_1")
    await pipe.refresh()
    slot = account_slot(rec)
    right = pipe._slots[slot]
    pipe._slots[slot] = next(a for a in set(pipe._slots) if a != right)
    lim = limiter(pipe, redis, None, rec)  # only the check goes to the mis-mapped slot
    assert (await lim.check(StoreCheck(rec.key_id, rec.hash, 1, ARGS))).code is Code.OK
    assert pipe._slots[slot] == right


async def test_ask_during_a_slot_migration_is_followed_for_that_command(redis, cluster_pipe):
    """A slot migrating between nodes: the source answers ASK for a key it does not hold, the
    client sends ASKING and the command to the target, and its map does not change."""
    pipe = cluster_pipe
    await pipe.refresh()
    key_id = "00000000000000aa"  # never issued: the source does not hold it
    slot = slot_of(("EVALSHA", "", 1, schema.key_directory(key_id)))
    source = pipe._slots[slot]
    target = next(a for a in set(pipe._slots) if a != source)
    assert source is not None and target is not None
    src, dst = pipe.node(source), pipe.node(target)
    (src_id,), (dst_id,) = await src.execute([("CLUSTER", "MYID")]), await dst.execute([("CLUSTER", "MYID")])  # fmt: skip
    try:
        assert await dst.execute([("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)]) == ["OK"]
        assert await src.execute([("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)]) == ["OK"]
        key = schema.key_directory(key_id)
        # One key: with several, a target answers TRYAGAIN until all of them have moved.
        (reply,) = await pipe.execute([("EVAL", "return redis.call('EXISTS', KEYS[1])", 1, key)])
        assert reply == 0  # answered by the target, after ASKING
        (direct,) = await src.execute([("EVAL", "return redis.call('EXISTS', KEYS[1])", 1, key)])
        assert str(direct).startswith(f"ASK {slot} ")  # what the source said
        assert pipe._slots[slot] == source
    finally:
        for node in (src, dst):
            await node.execute([("CLUSTER", "SETSLOT", slot, "STABLE")])


async def test_tryagain_during_a_slot_migration_is_sent_again(redis, cluster_pipe):
    """A check's keys half migrated: the source answers TRYAGAIN (it ran nothing). The client
    sends the command again after a short wait; the keys have moved meanwhile, so the source
    answers MOVED and the target runs it, once."""
    pipe = cluster_pipe
    await pipe.refresh()
    first, second = "tw:{00000000000000bb}:a", "tw:{00000000000000bb}:b"
    slot = slot_of(("EVAL", "", 1, first))
    source = pipe._slots[slot]
    target = next(a for a in set(pipe._slots) if a != source)
    assert source is not None and target is not None
    src, dst = pipe.node(source), pipe.node(target)
    (src_id,), (dst_id,) = await src.execute([("CLUSTER", "MYID")]), await dst.execute([("CLUSTER", "MYID")])  # fmt: skip
    host, port = target.rsplit(":", 1)
    script = "redis.call('INCR', KEYS[2]); return redis.call('GET', KEYS[1])"
    try:
        assert await src.execute([("SET", first, "here")]) == ["OK"]
        assert await dst.execute([("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)]) == ["OK"]
        assert await src.execute([("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)]) == ["OK"]
        (direct,) = await src.execute([("EVAL", script, 2, first, second)])
        assert str(direct).startswith("TRYAGAIN")  # `first` is here, `second` is not

        async def finish_migration() -> None:
            await asyncio.sleep(0.005)
            assert await src.execute([("MIGRATE", host, port, first, 0, 5000)]) == ["OK"]
            for node in (dst, src):
                await node.execute([("CLUSTER", "SETSLOT", slot, "NODE", dst_id)])

        (reply,), _ = await asyncio.gather(
            pipe.execute([("EVAL", script, 2, first, second)]), finish_migration()
        )
        assert reply == "here" and pipe.tryagains >= 1
        assert await dst.execute([("GET", second)]) == ["1"]  # run once, on the target
    finally:
        await dst.execute([("DEL", first, second)])
        await src.execute([("DEL", first, second)])
        for node in (src, dst):
            await node.execute([("CLUSTER", "SETSLOT", slot, "STABLE")])
        # The slot is the target's now: hand it back, so later tests find the map they expect.
        for node in (src, dst):
            await node.execute([("CLUSTER", "SETSLOT", slot, "NODE", src_id)])
        await pipe.refresh()


async def test_a_primary_killed_and_replaced_by_its_replica(tmp_path, redis_mode):
    """SIGKILL the primary serving a key, promote its replica: checks on that primary's slots
    fail as clear store errors until the slot map is refreshed, then pass on the new primary;
    checks on the other primaries keep passing throughout."""
    if redis_mode != "cluster":
        pytest.skip("Redis Cluster only (--redis-mode cluster)")
    cluster = LocalCluster(tmp_path, masters=3, replicas=1).start()
    redis = connect(cluster.url)
    pipe = open_pipe(cluster.url, timeout_s=0.5)
    try:
        store = KeyStore(redis, KeyHasher())
        recs = [(await store.create("pro", f"cus_{i}"))[1] for i in range(12)]
        assert isinstance(pipe, RedisClusterPipe)
        lim = limiter(pipe, redis)
        assert {(await lim.check(StoreCheck(r.key_id, r.hash, 1, ARGS))).code for r in recs} == {
            Code.OK
        }
        await asyncio.sleep(0.5)  # replication on loopback: well within this
        victim = await node_port(pipe, recs[0])
        replica = cluster.replica_of(victim)
        cluster.kill_node(victim)
        assert cluster.cli(replica, "cluster", "failover", "takeover").strip() == "OK"
        on_victim = [r for r in recs if await node_port_cached(pipe, r) == victim]
        others = [r for r in recs if r not in on_victim]
        refreshes = pipe.refreshes
        deadline = time.monotonic() + 20
        while True:
            outs = await asyncio.gather(
                *(lim.check(StoreCheck(r.key_id, r.hash, 1, ARGS)) for r in recs),
                return_exceptions=True,
            )
            for rec, out in zip(recs, outs, strict=True):
                if isinstance(out, BaseException):
                    assert isinstance(out, StoreUnavailable), out
                    assert rec in on_victim, f"{rec.key_id} is not on the killed node: {out}"
            if all(not isinstance(o, BaseException) for o in outs):
                break
            assert time.monotonic() < deadline, "the new primary was never used"
            await asyncio.sleep(0.1)
        assert {o.code for o in outs} == {Code.OK}  # type: ignore[union-attr]
        assert pipe.refreshes > refreshes and f"127.0.0.1:{replica}" in set(pipe._slots)
        assert others, "the keys spread over more than one primary"
    finally:
        await pipe.aclose()
        with contextlib.suppress(Exception):
            await redis.aclose()
        cluster.stop()


async def node_port_cached(pipe: RedisClusterPipe, rec: KeyRecord) -> int | None:
    """The port the client's current map routes ``rec``'s checks to (no refresh)."""
    address = pipe._slots[account_slot(rec)]
    return int(address.rsplit(":", 1)[1]) if address else None


def test_the_client_runs_on_uvloop_as_authz_does(redis_server):
    """authz runs on uvloop, whose transports are not asyncio's: a check and an error reply
    there, in a loop of its own."""
    import uvloop

    async def go() -> list[object]:
        pipe = open_pipe(redis_server, timeout_s=5.0)
        try:
            key = schema.key_directory("0123456789abcdef")
            return await pipe.execute([("EVAL", "return 7", 1, key),
                                       ("EVAL", "return redis.error_reply('no')", 1, key)])  # fmt: skip
        finally:
            await pipe.aclose()

    replies = uvloop.run(go())
    assert replies[0] == 7 and isinstance(replies[1], ReplyError)


@pytest.fixture
def password_redis(tmp_path):
    """A redis-server of its own that requires the password "s3cret", and also listens on
    a Unix socket (tmp_path / "redis.sock"); yields its port."""
    import subprocess

    from devkit.stack import port_open, redis_argv, wait_for

    port = free_port()
    argv = [*redis_argv(port, tmp_path), "--requirepass", "s3cret",
            "--unixsocket", str(tmp_path / "redis.sock"), "--unixsocketperm", "700"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open(port), "redis-server", 10)
        wait_for(lambda: (tmp_path / "redis.sock").exists(), "redis-server's socket", 10)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_a_password_and_a_database_in_the_url_are_used(password_redis):
    """redis://:secret@host:port/2 sends AUTH and SELECT on connect; a wrong password is a
    clear connection error, not a hang."""
    port = password_redis
    good = open_pipe(f"redis://:s3cret@127.0.0.1:{port}/2", timeout_s=2.0)
    assert await good.execute([("SET", "k", "v"), ("GET", "k")]) == ["OK", "v"]
    await good.aclose()
    other_db = open_pipe(f"redis://:s3cret@127.0.0.1:{port}/0", timeout_s=2.0)
    assert await other_db.execute([("GET", "k")]) == [None]
    await other_db.aclose()
    bad = open_pipe(f"redis://:wrong@127.0.0.1:{port}/0", timeout_s=2.0)
    with pytest.raises(ConnectionError, match=r"WRONGPASS|invalid"):
        await bad.execute([("PING",)])
    await bad.aclose()


async def test_a_unix_socket_url_is_used(password_redis, tmp_path):
    """unix://:secret@/path?db=3 connects over the socket, with AUTH and SELECT."""
    url = f"unix://:s3cret@{tmp_path / 'redis.sock'}?db=3"
    pipe = open_pipe(url, timeout_s=2.0)
    try:
        assert (await pipe.execute([("SET", "u", "1")]))[0] == "OK"
        info = (await pipe.execute([("CLIENT", "INFO")]))[0]
        assert "db=3" in info and "laddr=" in info and ".sock" in info
    finally:
        await pipe.aclose()
