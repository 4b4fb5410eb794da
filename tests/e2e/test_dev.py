"""`tollway dev` as a user runs it, `--workers 2`, and the shipped Envoy config."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from devkit import binaries, envoy_config
from devkit.stack import Ports, port_open, wait_for
from tests.e2e.conftest import fetch, request, running_edge

pytestmark = pytest.mark.e2e


def test_tollway_dev_starts_serves_and_stops_everything(tmp_path):
    """`tollway dev` prints a working key; a curl through Envoy is 200; SIGTERM stops it all."""
    ports = Ports.free()
    argv = [sys.executable, "-m", "cli", "dev", "--port", str(ports.envoy),
            "--admin-port", str(ports.envoy_admin), "--authz-port", str(ports.authz),
            "--metrics-port", str(ports.authz_metrics), "--upstream-port", str(ports.upstream),
            "--redis-port", str(ports.redis), "--webhook-port", str(ports.webhook),
            "--standin-port", str(ports.standin), "--receiver-port", str(ports.receiver),
            "--receiver-metrics-port", str(ports.receiver_metrics),
            "--portal-port", str(ports.portal), "--smtp-port", str(ports.smtp),
            "--api-port", str(ports.api)]  # fmt: skip
    env = {**os.environ, "TOLLWAY_DEV_DIR": str(tmp_path / "dev")}
    env.pop("TOLLWAY_REDIS_URL", None)
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "TOLLWAY_API_TOKEN=" in line:  # the banner's last part
                found.set()
        found.set()  # it exited: say why below, rather than wait out the timeout

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        found.wait(50)
        assert any("TOLLWAY_DEMO_KEY=" in x for x in lines), "".join(lines[-40:])
        key = next(
            re.search(r"TOLLWAY_DEMO_KEY=(\S+)", x).group(1) for x in lines if "DEMO_KEY" in x
        )
        r = request(ports.envoy, "/hello", {"x-api-key": key})
        assert r.status == 200 and r.upstream_saw("x-tollway-tier") == ["free"]
        assert request(ports.envoy, "/hello").status == 401
        assert any(f"curl -i http://127.0.0.1:{ports.envoy}/hello" in x for x in lines)
        # The portal: pricing, and a sign-in request for the demo customer (no Stripe
        # customer has its address, so no mail: the answer is the same).
        status, body = fetch(f"http://127.0.0.1:{ports.portal}/")
        assert status == 200 and b"<h2>free</h2>" in body
        assert any(f"portal    http://127.0.0.1:{ports.portal}" in x for x in lines)
        # The management API, with the token the banner prints: a key for a backend's user.
        token = next(
            re.search(r"TOLLWAY_API_TOKEN=(\S+)", x).group(1) for x in lines if "API_TOKEN" in x
        )
        status, body = fetch(
            f"http://127.0.0.1:{ports.api}/v1/keys",
            json.dumps({"tier": "pro", "customer": "cus_dev_test", "external_id": "u1"}).encode(),
            {"Authorization": f"Bearer {token}"},
        )
        assert status == 200, body
        r = request(ports.envoy, "/hello", {"x-api-key": json.loads(body)["key"]})
        assert r.status == 200 and r.upstream_saw("x-tollway-external-id") == ["u1"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        reader.join(5)
        assert proc.stdout is not None
        proc.stdout.close()
    every = (ports.envoy, ports.authz, ports.upstream, ports.redis, ports.envoy_admin,
             ports.webhook, ports.standin, ports.receiver, ports.portal, ports.smtp,
             ports.api)  # fmt: skip
    for port in every:
        assert not port_open(port), f"port {port} still open after tollway dev stopped"


def test_two_workers_serve_one_port_and_stop_on_sigterm(tmp_path):
    """--workers 2: Envoy spreads requests over both workers; metrics per worker; SIGTERM stops both."""
    with running_edge(tmp_path, workers=2) as edge:
        stack = edge.stack
        key, _ = edge.issue("pro")
        wait_for(lambda: port_open(stack.ports.authz_metrics + 1), "second worker", 20)
        assert all(edge.get("/v1/things", key).status == 200 for _ in range(10))
        served = 0
        per_worker = []
        for i in range(2):
            url = f"http://127.0.0.1:{stack.ports.authz_metrics + i}/metrics"
            text = fetch(url)[1].decode()
            m = re.search(r'tollway_authz_decisions_total\{reason="ok"\} (\d+)', text)
            per_worker.append(int(float(m.group(1))) if m else 0)
            served += per_worker[-1]
        assert served == 10
        # Envoy balances over each worker's own port: both get traffic, whatever the kernel's
        # SO_REUSEPORT hash does with Envoy's few connections.
        assert min(per_worker) >= 3, per_worker
        start = time.monotonic()
        assert stack.stop("authz") == 0
        assert time.monotonic() - start < 10
        assert sum('"event": "stopped"' in line for line in edge.logs) == 2


def test_shipped_envoy_config_validates(tmp_path):
    """envoy --mode validate accepts envoy/envoy.yaml as shipped and as rendered with new ports."""
    envoy = binaries.envoy()
    for path in (envoy_config.ENVOY_YAML,
                 envoy_config.write(envoy_config.render(1, 2, 3, 4), tmp_path / "r.yaml")):  # fmt: skip
        proc = subprocess.run([envoy, "--mode", "validate", "-c", str(path)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "OK" in proc.stdout + proc.stderr


def test_render_moves_only_ports():
    """Rendering changes the four ports and nothing else in the shipped config."""
    import yaml

    original = yaml.safe_load(envoy_config.ENVOY_YAML.read_text())
    rendered = envoy_config.render(11, 12, 13, 14)
    assert rendered["admin"]["address"]["socket_address"]["port_value"] == 12
    rendered["admin"] = original["admin"]
    listener = rendered["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == 11
    listener["address"] = original["static_resources"]["listeners"][0]["address"]
    for c, o in zip(
        rendered["static_resources"]["clusters"],
        original["static_resources"]["clusters"],
        strict=True,
    ):
        c["load_assignment"] = o["load_assignment"]
    assert rendered == original
