"""The Envoy configs deploy/kubernetes/components/envoy mounts are ones Envoy accepts
(`envoy --mode validate`): the shipped envoy.yaml and envoy-http.yaml, pointed at the
Kubernetes Services (tests/unit/test_kubernetes.py holds them current and agreeing)."""

from __future__ import annotations

import subprocess

import pytest

from devkit import binaries
from tests.kube import KUBE

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("name", ["grpc.yaml", "http.yaml"])
def test_envoy_accepts_the_kubernetes_config(name):
    path = KUBE / "components" / "envoy" / name
    proc = subprocess.run([binaries.envoy(), "--mode", "validate", "-c", str(path)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
