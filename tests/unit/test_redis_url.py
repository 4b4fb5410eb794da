"""One reader of a Redis URL: what each form means, what is refused, and that both clients
(redis-py for the services, the lean pipe for the check path) are built from it alike."""

from __future__ import annotations

import pytest

from authz.redis_cluster import RedisClusterPipe
from authz.redis_pipe import NodePipe, open_pipe
from tollway.redis_client import connect
from tollway.redis_url import RedisTarget, parse
from tollway.settings import RedisSettings, SettingsError, load


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://127.0.0.1:6380/2", RedisTarget((("127.0.0.1", 6380),), db=2)),
        ("redis://h", RedisTarget((("h", 6379),))),
        ("rediss://:p%40ss@h:1/0", RedisTarget((("h", 1),), tls=True, password="p@ss")),
        ("unix:///run/redis.sock?db=3", RedisTarget(path="/run/redis.sock", db=3)),
        ("redis://[::1]:7000", RedisTarget((("::1", 7000),))),
        (
            "redis+cluster://u:pw@a:7000,b:7001,c",
            RedisTarget(
                (("a", 7000), ("b", 7001), ("c", 6379)), cluster=True, username="u", password="pw"
            ),
        ),
        ("redis+cluster://a:7000/0", RedisTarget((("a", 7000),), cluster=True)),
    ],
)
def test_each_form_of_url_reads_as_one_target(url, target):
    """Hosts, ports, database, TLS, credentials (percent-decoded) and a cluster's seeds."""
    assert parse(url) == target


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:1", "expected a URL starting with one of"),
        ("redis://h:1,h:2", r"use redis\+cluster://"),
        ("redis+cluster://h:1/3", "only database 0"),
        ("redis://h:port", "not a port"),
        ("redis://h:99999", "not a port"),
        ("redis://h:1/x", "not a database number"),
        ("redis://h:1/0?socket_timeout=1", "unexpected query options"),
        ("unix:///s?foo=1", "a unix:// URL takes"),
    ],
)
def test_a_url_that_is_not_one_is_refused_with_what_is_wrong(url, message):
    with pytest.raises(ValueError, match=message):
        parse(url)


def test_settings_refuse_a_bad_url_at_load_without_echoing_its_password():
    with pytest.raises(SettingsError, match="not a port") as caught:
        load(RedisSettings, {"TOLLWAY_REDIS_URL": "redis://:hunter2@h:port/0"})
    assert "hunter2" not in str(caught.value)


async def test_both_clients_take_a_cluster_url_with_several_seeds():
    """The URL a worker passes to both clients: each takes every seed (redis-py's own URL
    reader refused a second host)."""
    url = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
    pipe = open_pipe(url, timeout_s=1.0)
    assert isinstance(pipe, RedisClusterPipe)
    client = connect(url)
    nodes = {(n.host, n.port) for n in client.startup_nodes}
    assert nodes == {("127.0.0.1", 7000), ("127.0.0.1", 7001)}
    await client.aclose()
    assert isinstance(open_pipe("redis://127.0.0.1:1/0", timeout_s=1.0), NodePipe)
