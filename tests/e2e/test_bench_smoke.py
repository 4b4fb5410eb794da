"""make bench's pieces work, so the benchmark cannot rot unnoticed between runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request

import pytest
import yaml
from envoy.service.auth.v3 import external_auth_pb2 as pb

from bench.drain import drain_fresh
from bench.keyspace import keyspace
from bench.listeners import envoy_config
from bench.load import check_body
from devkit import binaries
from devkit.stack import free_port, port_open, wait_for
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.redis_client import connect

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("mode", ["grpc", "http"])
def test_bench_envoy_config_validates(tmp_path, mode):
    """The bench config (ext_authz taken from the shipped config of each mode, and the same
    filter to the ceiling and the lean reference) passes envoy --mode validate."""
    path = tmp_path / "bench.yaml"
    others = {"with_ceiling": (10005, 10006), "with_reference": (10007, 10008)}
    path.write_text(yaml.safe_dump(envoy_config(10001, 10002, 10003, 10004, others, mode)))
    proc = subprocess.run([binaries.envoy(), "--mode", "validate", "-c", str(path)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_bench_check_request_is_grpc_framed_and_realistic():
    """The body h2load sends is one gRPC frame holding a CheckRequest with 10+ headers."""
    body = check_body("tw_live_x")
    assert body[0] == 0 and int.from_bytes(body[1:5], "big") == len(body) - 5
    req = pb.CheckRequest.FromString(body[5:])
    assert len(req.attributes.request.http.headers) >= 10
    assert req.attributes.request.http.headers["x-api-key"] == "tw_live_x"


@pytest.mark.single_redis
def test_the_lean_reference_answers_and_counts(redis_server):
    """bench/reference.py answers each check 200 with its RateLimit headers, counting per
    key in Redis (one EVALSHA each): the floor make bench compares authz with."""
    port = free_port()
    redis_port = int(redis_server.rsplit(":", 1)[1].split("/")[0])
    argv = [
        sys.executable,
        "bench/reference.py",
        "--port",
        str(port),
        "--redis-port",
        str(redis_port),
    ]
    proc = subprocess.Popen(argv)
    try:
        wait_for(lambda: port_open(port), "the reference", 10)
        answers = []
        key = os.urandom(8).hex()  # a counter of its own, new
        for _ in range(3):
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/check/x", headers={"x-api-key": key}
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                answers.append((r.status, int(r.headers["ratelimit-remaining"])))
        assert [s for s, _ in answers] == [200] * 3
        # The first counts 1; the next ones more, unless a second passed and the window ended.
        assert answers[0][1] == 10**6 - 1 and all(n <= 10**6 - 1 for _, n in answers)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("mode", ["v1", "stream"])
def test_bench_drain_bills_exactly(mode, tmp_path):
    """The drain bench runs and its internal check (billed == usage) holds, in both modes."""
    took, calls = drain_fresh(mode, 120, tmp_path, lambda _name, _line: None)
    assert took > 0 and calls == (120 if mode == "v1" else 3)  # stream: 2 batches + a session


@pytest.mark.single_redis  # as make bench's: its memory is one redis-server's INFO
def test_bench_keyspace_issues_working_keys_and_measures_memory(redis_server, tmp_path):
    """The keyspace row's loading (3,000 keys over 300 accounts, the product's write_many):
    every key issued is found by its plaintext, memory grows per key and per account, and
    each rate is taken over the file of the step's keys (here: their count)."""
    files: dict[str, list[str]] = {}

    def rate_over(keys_file, warm_s):
        files[keys_file.name] = keys_file.read_text().split()
        return {"rps": float(len(files[keys_file.name]))}

    r = keyspace(redis_server, "bench", tmp_path, rate_over, keys=3_000, accounts=300)
    assert [r["rates"][n]["rps"] for n in ("1k", "warm", "beyond")] == [1_000.0, 3_000.0, 3_000.0]
    assert r["per_key"] > 100 and r["per_account"] > 0

    async def found(plaintexts):
        redis = connect(redis_server)
        store = KeyStore(redis, KeyHasher())
        records = [(await store.find(k))[0] for k in plaintexts]
        await redis.aclose()
        return records

    sample = files["keys_beyond.txt"][::300]
    records = asyncio.run(found(sample))
    assert {r.tier for r in records} == {"bench"}
    assert all(r.customer.startswith("cus_ks_") for r in records)
