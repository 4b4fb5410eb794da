"""make bench's pieces work, so the benchmark cannot rot unnoticed between runs."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from envoy.service.auth.v3 import external_auth_pb2 as pb

from bench.listeners import envoy_config
from bench.load import check_body
from bench.run import drain_fresh
from devkit import binaries

pytestmark = pytest.mark.e2e


def test_bench_envoy_config_validates(tmp_path):
    """The two-listener bench config (ext_authz taken from envoy.yaml) passes envoy --mode validate."""
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(envoy_config(10001, 10002, 10003, 10004)))
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


@pytest.mark.parametrize("mode", ["v1", "stream"])
def test_bench_drain_bills_exactly(mode, tmp_path):
    """The drain bench runs and its internal check (billed == usage) holds, in both modes."""
    took, calls = drain_fresh(mode, 120, tmp_path, lambda _name, _line: None)
    assert took > 0 and calls == (120 if mode == "v1" else 3)  # stream: 2 batches + a session
