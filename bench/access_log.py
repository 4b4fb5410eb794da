"""What billing what was served costs Envoy and the access-log receiver (outside make bench).

``python bench/access_log.py [--seconds 8] [--rounds 2]`` starts the dev kit's whole stack (one
receiver), then two more Envoys from the rendered config: one with only the gRPC access logger,
one with no access log at all. wrk (16 connections) loads each in turn, interleaved, on a path
the upstream answers 200 (billed: the receiver writes nothing) and one it answers 500
(refunded: one apply_log_entry.lua call), and reads CPU time from /proc:

    envoy   µs of Envoy CPU per request (ext_authz and the Python echo upstream included)
    receiver  µs of receiver CPU per access-log entry

README "What billing what was served costs" quotes its runs. The machine is small and noisy:
compare the rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit import binaries
from devkit.stack import Ports, Stack, free_port, http_ok
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.redis_client import connect

TIERS = """
[tiers.huge]
requests_per_second = 1000000000.0
burst = 1000000000
monthly_quota = 0
over_quota = "bill"
"""


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, path: str, key: str, seconds: int) -> int:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c16",
            f"-d{seconds}s",
            "-H",
            f"x-api-key: {key}",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"(\d+) requests in", out)
    assert found, out
    return int(found.group(1))


def variant(rendered: dict[str, Any], keep_grpc_log: bool) -> tuple[dict[str, Any], int, int]:
    """The rendered config on new ports, with only the gRPC access log, or with none."""
    config: dict[str, Any] = yaml.safe_load(yaml.safe_dump(rendered))
    listener = config["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    grpc_log = "envoy.access_loggers.http_grpc"
    hcm["access_log"] = [a for a in hcm["access_log"] if keep_grpc_log and a["name"] == grpc_log]
    port, admin = free_port(), free_port()
    listener["address"]["socket_address"]["port_value"] = port
    config["admin"]["address"]["socket_address"]["port_value"] = admin
    return config, port, admin


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        (state / "tiers.toml").write_text(TIERS)
        stack = Stack(
            Ports.free(),
            state / "tiers.toml",
            state,
            lambda name, line: None,
            standin=False,
            env={"TOLLWAY_LOG_LEVEL": "WARNING"},
        )
        try:
            state.mkdir(exist_ok=True)
            stack.receiver_ports = {
                "receiver": (stack.ports.receiver, stack.ports.receiver_metrics)
            }
            for name in ("redis", "upstream", "authz", "receiver", "envoy"):
                stack.start(name)  # no webhook or metering: nothing here reaches Stripe

            async def issue() -> str:
                redis = connect(stack.effective_redis_url)
                try:
                    return (await KeyStore(redis, KeyHasher()).create("huge", "cus_bench"))[0]
                finally:
                    await redis.aclose()

            key = asyncio.run(issue())
            rendered = yaml.safe_load((state / "envoy.yaml").read_text())
            ports = {}
            for name, keep in (("with access log", True), ("without", False)):
                config, port, admin = variant(rendered, keep)
                conf = state / f"{port}.yaml"
                conf.write_text(yaml.safe_dump(config))
                argv = [
                    binaries.envoy(),
                    "-c",
                    str(conf),
                    "--disable-hot-restart",
                    "--log-level",
                    "warn",
                    "--concurrency",
                    "2",
                ]
                ready = f"http://127.0.0.1:{admin}/ready"
                proc = stack.start_process(name, argv, lambda url=ready: http_ok(url))  # type: ignore[misc]
                ports[name] = (port, proc.popen.pid)
            receiver = stack.procs["receiver"].popen.pid
            print(
                f"{'envoy':<16} {'path':<12} {'requests':>8} {'envoy µs/req':>13} "
                f"{'receiver µs/entry':>18}"
            )
            for _ in range(args.rounds):
                for name in ("without", "with access log"):
                    port, pid = ports[name]
                    for path in ("/v1/things", "/status/500"):
                        e0, r0 = cpu_s(pid), cpu_s(receiver)
                        n = wrk(port, path, key, args.seconds)
                        time.sleep(1.5)  # Envoy's last flushes, and the receiver's work on them
                        e1, r1 = cpu_s(pid), cpu_s(receiver)
                        print(
                            f"{name:<16} {path:<12} {n:>8} {1e6 * (e1 - e0) / n:>13.1f} "
                            f"{1e6 * (r1 - r0) / n:>18.1f}",
                            flush=True,
                        )
        finally:
            stack.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
