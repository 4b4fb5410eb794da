"""TLS between Envoy and tollway where no mesh encrypts: authz (in the mode the run is in:
`make test` runs this file in gRPC and HTTP mode) and the access-log receiver serve TLS with
TOLLWAY_TLS_CERT and _KEY, and serve only a client whose certificate TOLLWAY_TLS_CLIENT_CA
signed. Envoy runs envoy/snippets/tls.yaml as it is shipped. Certificates are made here
(trustme), for the test alone."""

from __future__ import annotations

import re
import socket
import ssl
import time
from pathlib import Path

import pytest
import trustme

from devkit.envoy_config import UpstreamTls
from tests.e2e.conftest import fetch, running_edge

pytestmark = pytest.mark.e2e
NAME = "tollway.test"


def entries_received(port: int) -> float:
    """Access-log entries the receiver on metrics ``port`` has judged, whatever the result."""
    status, body = fetch(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    found = re.findall(r"^tollway_accesslog_entries_total\{[^}]*\} (\S+)$", body.decode(), re.M)
    return sum(float(v) for v in found)


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def answer(port: int, ca: Path, cert: tuple[Path, Path] | None = None) -> bytes:
    """What the server on ``port`` answers a client that trusts ``ca`` and presents ``cert``
    (or none): an HTTP/2 preface and SETTINGS where h2 was agreed (gRPC), else GET /healthz.
    b"" when it refuses: at the handshake, or at the first read after it (TLS 1.3 sends the
    server's refusal of a client without a certificate then)."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    context.set_alpn_protocols(["h2", "http/1.1"])
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=NAME) as tls,
        ):
            h2 = tls.selected_alpn_protocol() == "h2"
            tls.sendall(H2_PREFACE if h2 else b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            return tls.recv(1024)
    except (ssl.SSLError, ConnectionResetError):
        return b""


def test_envoy_reaches_authz_and_the_receiver_over_mutual_tls(tmp_path):
    ca = trustme.CA()
    server, envoy = ca.issue_cert(NAME), ca.issue_cert("envoy.test")
    files = {n: tmp_path / n for n in ("ca.pem", "server.pem", "server.key", "envoy.pem", "envoy.key")}  # fmt: skip
    ca.cert_pem.write_to_path(str(files["ca.pem"]))
    server.cert_chain_pems[0].write_to_path(str(files["server.pem"]))
    server.private_key_pem.write_to_path(str(files["server.key"]))
    envoy.cert_chain_pems[0].write_to_path(str(files["envoy.pem"]))
    envoy.private_key_pem.write_to_path(str(files["envoy.key"]))
    env = {
        "TOLLWAY_TLS_CERT": str(files["server.pem"]),
        "TOLLWAY_TLS_KEY": str(files["server.key"]),
        "TOLLWAY_TLS_CLIENT_CA": str(files["ca.pem"]),
    }
    tls = UpstreamTls(files["ca.pem"], files["envoy.pem"], files["envoy.key"], NAME)
    with running_edge(tmp_path, env=env, envoy_tls=tls) as edge:
        ports = edge.stack.ports
        key, _ = edge.issue("pro")
        assert edge.get("/v1/things", key).status == 200  # checked by authz, over mTLS
        assert edge.get("/v1/things", "tw_live_nosuchkey").status == 401
        deadline = time.monotonic() + 15  # Envoy flushes its access log every 0.5 s
        while entries_received(ports.receiver_metrics) < 1:
            assert time.monotonic() < deadline, "no access-log entry reached the receiver"
            time.sleep(0.2)
        client = (files["envoy.pem"], files["envoy.key"])
        for port in (ports.authz, ports.receiver):
            assert answer(port, files["ca.pem"], client) != b""  # Envoy's certificate: served
            assert answer(port, files["ca.pem"]) == b""  # none: refused
