"""The e2e stack: real Envoy, authz, redis-server and echo upstream on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import json
import os
import re
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster

from devkit.envoy_config import UpstreamTls
from devkit.stack import Ports, Stack
from tests.conftest import CLUSTERS
from tests.support import TEST_TIERS
from tollway import schema
from tollway.clock import WallClock
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.lifecycle import Lifecycle
from tollway.redis_client import connect, connect_sync

pytestmark = pytest.mark.e2e


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lowercased names
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def upstream_headers(self) -> list[list[str]]:
        """The headers the echo upstream says it received."""
        return self.json()["headers"]

    def upstream_saw(self, name: str) -> list[str]:
        return [v for k, v in self.upstream_headers if k == name]


def request(port: int, path: str, headers: list[tuple[str, str]] | dict[str, str] | None = None,
            method: str = "GET") -> Response:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path)
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        for k, v in items:
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def fetch(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """GET (or POST with ``data``) with urllib, following redirects; (status, body), closed."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


class Edge:
    """A running stack plus the helpers tests use against it."""

    def __init__(self, stack: Stack, logs: list[str]) -> None:
        self.stack = stack
        self.logs = logs
        self.issued: list[str] = []
        self.accounts: dict[str, str] = {}  # key id -> account, of the keys issued here
        self.redis = connect_sync(stack.effective_redis_url)

    def get(self, path: str, key: str | None = None, headers=None) -> Response:
        h = dict(headers or {})
        if key is not None:
            h["x-api-key"] = key
        return request(self.stack.ports.envoy, path, h)

    def issue(self, tier: str, customer: str = "", **fields: str) -> tuple[str, str]:
        """Issue a key through the real KeyStore, for a customer of its own unless ``customer``
        is given (keys of one customer share its account's bucket and quota); returns
        (plaintext, key id)."""
        customer = customer or f"cus_e2e_{len(self.issued)}_{os.urandom(3).hex()}"

        async def go():
            client = connect(self.stack.effective_redis_url)
            try:
                return await KeyStore(client, KeyHasher()).create(tier, customer)
            finally:
                await client.aclose()

        plaintext, record = asyncio.run(go())
        self.accounts[record.key_id] = record.account
        if fields:
            self.redis.hset(schema.key_record(record.key_id, record.account), mapping=fields)
        self.issued.append(plaintext)
        return plaintext, record.key_id

    def revoke(self, key_id: str) -> None:
        """Revoke through the real Lifecycle (as `tollway keys revoke` does; it announces it)."""

        async def go():
            client = connect(self.stack.effective_redis_url)
            try:
                await Lifecycle(KeyStore(client, KeyHasher()), WallClock()).revoke(key_id)
            finally:
                await client.aclose()

        asyncio.run(go())

    def command_calls(self, command: str) -> int:
        """How many times Redis ran ``command`` so far, summed over every node of a cluster."""
        if isinstance(self.redis, RedisCluster):
            per_node = self.redis.info("commandstats", target_nodes=RedisCluster.ALL_NODES).values()
        else:
            per_node = [self.redis.info("commandstats")]
        return sum(int(n.get(f"cmdstat_{command}", {}).get("calls", 0)) for n in per_node)

    def authz_metrics(self, worker: int = 0) -> str:
        port = self.stack.ports.authz_metrics + worker
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def redis_pids(self) -> list[int]:
        """The redis-server processes behind this stack: its own, or every cluster node."""
        cluster = CLUSTERS.get(self.stack.effective_redis_url)
        return cluster.pids() if cluster else [self.stack.procs["redis"].popen.pid]

    def kill_redis(self) -> None:
        """SIGKILL Redis: this stack's redis-server, or every node of the cluster."""
        cluster = CLUSTERS.get(self.stack.effective_redis_url)
        if cluster:
            cluster.kill()
        else:
            self.stack.kill("redis")

    def restart_redis(self) -> None:
        cluster = CLUSTERS.get(self.stack.effective_redis_url)
        if cluster:
            cluster.restart()
        else:
            self.stack.start("redis")

    def usage(self, key_id: str) -> int:
        """Requests counted for the account of key ``key_id`` (one issued here), less the
        refunds the access log made (its windows, less the carry; not the amounts)."""
        fields = self.redis.hgetall(schema.usage(self.accounts[key_id]))
        counted = sum(int(v) for k, v in fields.items() if k.isdigit())
        return counted - int(fields.get("carry", 0))


# With --redis-mode cluster, every stack shares the session's Redis Cluster (flushed when a
# stack starts) instead of starting a redis-server of its own. With --authz-mode http, every
# stack runs authz and Envoy in HTTP ext_authz mode (envoy/envoy-http.yaml).
_shared_redis: dict[str, str | None] = {"url": None}
_authz_mode = {"mode": "grpc"}


@pytest.fixture(scope="session", autouse=True)
def _stacks_use_the_cluster(
    request: pytest.FixtureRequest, redis_mode: str, authz_mode: str
) -> Iterator[None]:
    if redis_mode == "cluster":
        _shared_redis["url"] = request.getfixturevalue("redis_server")
    _authz_mode["mode"] = authz_mode
    yield
    _shared_redis["url"] = None


@contextlib.contextmanager
def running_edge(
    tmp: Path,
    tiers_text: str = TEST_TIERS,
    workers: int = 1,
    env: dict[str, str] | None = None,
    redis_aof: bool = False,
    receivers: int = 1,
    portal: bool = False,
    api: bool = False,
    envoy_tls: UpstreamTls | None = None,
) -> Iterator[Edge]:
    """Start the whole stack in ``tmp``; stop it (and print its last log lines) on exit."""
    redis_url = _shared_redis["url"]
    if redis_url is not None:
        flush = connect_sync(redis_url)
        flush.flushall()
        flush.close()
    tiers = tmp / "tiers.toml"
    tiers.write_text(tiers_text)
    logs: list[str] = []
    lock = threading.Lock()

    def sink(name: str, line: str) -> None:
        with lock:
            logs.append(f"{name} | {line}")

    stack = Stack(Ports.free(), tiers, tmp / "state", sink, redis_url=redis_url,
                  authz_workers=workers, redis_aof=redis_aof, env=env or {},
                  authz_mode=_authz_mode["mode"], receivers=receivers, portal=portal,
                  api=api, envoy_tls=envoy_tls)  # fmt: skip
    stack.start_all()
    edge = Edge(stack, logs)
    leaks: list[str] = []
    try:
        yield edge
        with connect_sync(stack.effective_redis_url) as fresh:  # Redis may have restarted
            leaks = secrets_in(redis_values(fresh), "Redis", stack.webhook_secret)
    finally:
        stack.stop_all()
        edge.redis.close()
        if redis_url is not None:
            # redis-py's sync RedisCluster drops the clients of its old node objects without
            # closing them when it rebuilds its slot map (after a test kills and restarts every
            # node). Collect them now, quietly, rather than at an arbitrary later moment. Only
            # the tests use sync clients; the services use redis.asyncio throughout.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
        (tmp / "stack.log").write_text("\n".join(logs) + "\n")  # every line, for a post-mortem
        print(f"all logs: {tmp / 'stack.log'}")
        print("\n".join(logs[-80:]))  # shown by pytest when a test failed
    leaks += secrets_in(logs, "the logs", stack.webhook_secret)
    assert not leaks, "secrets written where they must never be:\n" + "\n".join(leaks[:10])


# Any plaintext API key, whoever issued it (tests, the claim flow, the CLI, the management
# API), and any operator API token: their formats.
PLAINTEXT_KEY = re.compile(r"(?:tw_(?:live|test)_|twa_)[0-9A-Za-z]{20,}")


def redis_values(client: Any) -> list[str]:
    """Every key name and every value in Redis, as text, one entry per item."""
    out: list[str] = []
    for name in client.scan_iter(count=1000):
        kind = client.type(name)
        out.append(name)
        if kind == "string":
            out.append(str(client.get(name)))
        elif kind == "hash":
            out.extend(f"{k}={v}" for k, v in client.hgetall(name).items())
        elif kind in ("set", "zset", "list"):
            read = {"set": client.smembers, "list": lambda n: client.lrange(n, 0, -1),
                    "zset": lambda n: client.zrange(n, 0, -1)}[kind]  # fmt: skip
            out.extend(map(str, read(name)))
        elif kind == "stream":
            out.extend(str(e) for e in client.xrange(name))
    return out


def secrets_in(texts: list[str], where: str, webhook_secret: str) -> list[str]:
    """Each text that holds a plaintext key or the webhook signing secret."""
    return [f"{where}: {t[:200]}" for t in texts
            if PLAINTEXT_KEY.search(t) or webhook_secret in t]  # fmt: skip


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """One stack shared by a module's tests (test_faults.py gets its own, as it kills things)."""
    with running_edge(tmp_path_factory.mktemp("edge")) as e:
        yield e
