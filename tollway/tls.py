"""TLS on the ports Envoy calls, from TlsSettings (TOLLWAY_TLS_CERT, _KEY, _CLIENT_CA): for
authz's gRPC server and its HTTP front, and the access-log receiver. Without a certificate,
the ports stay plaintext (a loopback, or a mesh that encrypts for them). With a client CA,
a client must present a certificate it signed: Envoy's, so that nothing else can ask for a
check or stream log entries."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import grpc

from tollway.settings import TlsSettings


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def grpc_credentials(s: TlsSettings) -> grpc.ServerCredentials | None:
    """grpc's server credentials, or None for plaintext."""
    if not s.tls_cert:
        return None
    return grpc.ssl_server_credentials(
        [(_read(s.tls_key), _read(s.tls_cert))],
        root_certificates=_read(s.tls_client_ca) if s.tls_client_ca else None,
        require_client_auth=bool(s.tls_client_ca),
    )


def add_port(server: Any, address: str, s: TlsSettings) -> int:
    """Bind ``address`` on a grpc.aio server, over TLS when configured; the port (0: failed)."""
    credentials = grpc_credentials(s)
    if credentials is None:
        return int(server.add_insecure_port(address))
    return int(server.add_secure_port(address, credentials))


def server_context(s: TlsSettings) -> ssl.SSLContext | None:
    """An SSL context for an asyncio server (authz's HTTP front), or None for plaintext."""
    if not s.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(s.tls_cert, s.tls_key)
    if s.tls_client_ca:
        context.load_verify_locations(s.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
