"""Fixtures shared by every tier: a real redis-server per session, on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from authz.redis_pipe import open_pipe
from devkit.cluster import LocalCluster
from devkit.stack import free_port, port_open, redis_argv, wait_for
from tests.support import TEST_TIERS
from tollway.redis_client import connect

CLUSTERS: dict[str, LocalCluster] = {}  # the session's cluster, by URL


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-mode",
        choices=("single", "cluster"),
        default=os.environ.get("TOLLWAY_TEST_REDIS_MODE", "single"),
        help="run the integration and e2e tiers on one redis-server, or on a 3-master cluster",
    )
    parser.addoption(
        "--authz-mode",
        choices=("grpc", "http"),
        default=os.environ.get("TOLLWAY_TEST_AUTHZ_MODE", "grpc"),
        help="the e2e stacks' ext_authz transport: Envoy's grpc_service or http_service",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skips = {}
    if config.getoption("--redis-mode") == "cluster":
        skips["single_redis"] = "needs a single redis-server (stops, blocks or debugs it)"
    if config.getoption("--authz-mode") == "http":
        skips["grpc_only"] = "about authz's gRPC mode only"
    for item in items:
        for marker, reason in skips.items():
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def authz_mode(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("--authz-mode"))


@pytest.fixture(scope="session")
def redis_mode(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("--redis-mode"))


@pytest.fixture(scope="session")
def redis_server(redis_mode: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server (or, with --redis-mode cluster, a 3-master Redis Cluster) of our own for
    the whole session; yields its URL and stops it after."""
    if redis_mode == "cluster":
        cluster = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
        CLUSTERS[cluster.url] = cluster  # for the e2e tests that kill or freeze Redis
        try:
            yield cluster.url
        finally:
            cluster.stop()
        return
    with own_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@contextlib.contextmanager
def own_redis(data: Path, *extra: str) -> Iterator[str]:
    """A redis-server on a free loopback port, started with ``extra`` arguments; its URL,
    and it stops after."""
    port = free_port()
    proc = subprocess.Popen(
        [*redis_argv(port, data, debug=True), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: port_open(port), "redis-server", 10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def redis(redis_server: str) -> AsyncIterator[object]:
    """A client on a flushed database, closed after the test."""
    client = connect(redis_server)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def pipe(redis_server: str) -> AsyncIterator[object]:
    """authz's lean check-path client on the same Redis (or cluster), closed after the test."""
    client = open_pipe(redis_server, timeout_s=5.0)
    yield client
    await client.aclose()


@pytest.fixture
def tiers_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiers.toml"
    path.write_text(TEST_TIERS)
    return path
