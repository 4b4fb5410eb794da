"""The load generators `make bench` drives, and what it sends: h2load for gRPC Checks straight
to authz (h2c), wrk for HTTP through Envoy. Each returns rate, count and latency percentiles
parsed from the tool's own report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3 import external_auth_pb2 as pb

CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check"


def check_body(key: str, route: dict[str, str] | None = None) -> bytes:
    """A CheckRequest as Envoy sends one (12 headers), framed for gRPC; ``route``: the
    route's terms (context_extensions)."""
    headers = {
        ":authority": "api.example.com",
        ":method": "GET",
        ":path": "/v1/things?page=2",
        ":scheme": "http",
        "user-agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "accept": "application/json",
        "accept-encoding": "gzip, deflate",
        "x-forwarded-proto": "http",
        "x-request-id": "6b1f4c1e-6f7a-4c3e-9d2b-3f0f7f6c2a11",
        "x-envoy-expected-rq-timeout-ms": "15000",
        "content-length": "0",
        "x-api-key": key,
    }
    req = pb.CheckRequest(
        attributes=ac.AttributeContext(
            source=ac.AttributeContext.Peer(),
            destination=ac.AttributeContext.Peer(),
            request=ac.AttributeContext.Request(
                http=ac.AttributeContext.HttpRequest(
                    id="1234567890",
                    method="GET",
                    headers=headers,
                    path="/v1/things?page=2",
                    host="api.example.com",
                    scheme="http",
                    protocol="HTTP/1.1",
                )
            ),
            context_extensions=route or {},
        )
    )
    raw: bytes = req.SerializeToString()
    return b"\x00" + len(raw).to_bytes(4, "big") + raw


def h2load(
    port: int, body: Path, seconds: int, log: Path, conns: int = 4, streams: int = 16
) -> dict[str, float]:
    out = subprocess.run(
        [
            "h2load",
            "-c",
            str(conns),
            "-m",
            str(streams),
            "-D",
            str(seconds),
            "-d",
            str(body),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--log-file",
            str(log),
            f"http://127.0.0.1:{port}{CHECK_PATH}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    assert done and done.group(1) == done.group(2), out
    lat = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.strip())
    return {
        "rps": rate,
        "n": float(done.group(1)),
        "p50": lat[len(lat) // 2] / 1000,
        "p99": lat[int(len(lat) * 0.99)] / 1000,
    }


# wrk's Lua: every request the next key of a file (each thread's Lua state reads it once and
# starts at its own line).
ROTATE_KEYS = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("first", threads * 104729)
end
local keys = {}
for line in io.lines("KEYS_FILE") do keys[#keys + 1] = line end
local i = 0
request = function()
  if i == 0 then i = first % #keys end
  i = i % #keys + 1
  wrk.headers["x-api-key"] = keys[i]
  return wrk.format(nil, nil, wrk.headers)
end
"""


def wrk(
    url: str,
    seconds: int,
    key: str | None,
    conns: int = 32,
    delay_ms: int | None = None,
    post: str | None = None,
    headers: dict[str, str] | None = None,
    keys_file: Path | None = None,
) -> dict[str, float]:
    """wrk's rate, latency and counts; ``post``: a JSON body to POST instead of a GET;
    ``keys_file``: one key a line, each request the next key (each thread from a random
    line), instead of ``key`` on every request."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        if key:
            f.write(f'wrk.headers["x-api-key"] = "{key}"\n')
        if keys_file is not None:
            f.write(ROTATE_KEYS.replace("KEYS_FILE", str(keys_file)))
        for name, value in (headers or {}).items():
            f.write(f'wrk.headers["{name}"] = "{value}"\n')
        if post is not None:
            f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(post)}\n')
            f.write('wrk.headers["Content-Type"] = "application/json"\n')
        if delay_ms is not None:
            f.write(f"function delay() return {delay_ms} end\n")
    out = subprocess.run(
        ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", f.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(f.name)

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": ms("50%"),
        "p99": ms("99%"),
        "errors": float(bad.group(1)) if bad else 0.0,
        "n": float(total.group(1)) if total else 0.0,
    }
