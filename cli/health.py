"""`tollway health [SERVICE]`: is the service in this container (or on this host) serving?

Exit 0 if it is, 1 if not, with one line saying why. authz in gRPC mode is asked over its
gRPC health service for the Authorization service (NOT_SERVING while it drains); authz in
HTTP mode (TOLLWAY_AUTHZ_MODE=http), webhook, metering, the access-log receiver (on its
metrics port), the portal, the management API and the stand-in answer GET /healthz. Without SERVICE, the service is the one
PID 1 runs (``metering receive`` is the receiver), so a single
Docker HEALTHCHECK serves every service of the image. Ports come from the same TOLLWAY_*
settings the service reads. For authz, the line also says when spool files wait in
TOLLWAY_SPOOL_DIR, not loaded (another store's, or its own while its Redis was away at start):
``tollway usage spool list``.
"""

from __future__ import annotations

import argparse
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from api.settings import ApiSettings
from authz import AUTH_SERVICE
from authz.settings import AuthzSettings
from devkit.settings import StandinSettings
from metering.settings import MeteringSettings, ReceiverSettings
from portal.settings import PortalSettings
from tollway import spool
from tollway.process import Subparsers
from tollway.settings import SettingsError, load
from webhook.settings import WebhookSettings

SERVICES = ("authz", "webhook", "metering", "receiver", "portal", "api", "stripe-standin")
TIMEOUT_S = 2.0


def service_of_pid1(cmdline: Path = Path("/proc/1/cmdline")) -> str | None:
    try:
        argv = cmdline.read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return None
    if "metering" in argv and "receive" in argv:
        return "receiver"
    return next((a for a in argv if a in SERVICES), None)


def _http(port: int, path: str) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r:
            return r.status == 200, f"{url}: {r.status}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {exc}"


def _grpc(port: int) -> tuple[bool, str]:
    target = f"127.0.0.1:{port}"
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=AUTH_SERVICE), timeout=TIMEOUT_S
            )
        except grpc.RpcError as exc:
            return False, f"{target}: {exc.code().name}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{target}: {status}"


def _spooled(directory: Path) -> str:
    waiting = spool.listing(directory)
    if not waiting:
        return ""
    requests = sum(f.requests for f in waiting)
    return (
        f"; {len(waiting)} spool files ({requests} requests) wait in {directory}, not loaded: "
        "tollway usage spool list"
    )


def check(service: str, environ: Mapping[str, str]) -> tuple[bool, str]:
    if service == "authz":
        authz = load(AuthzSettings, environ)
        ok, said = _http(authz.port, "/healthz") if authz.mode == "http" else _grpc(authz.port)
        return ok, said + _spooled(authz.spool_dir)
    if service == "webhook":
        return _http(load(WebhookSettings, environ).port, "/healthz")
    if service == "metering":
        return _http(load(MeteringSettings, environ).port, "/healthz")
    if service == "receiver":
        return _http(load(ReceiverSettings, environ).metrics_port, "/healthz")
    if service == "portal":
        return _http(load(PortalSettings, environ).port, "/healthz")
    if service == "api":  # answers 200 while its Redis does; then its verify listener
        api = load(ApiSettings, environ)
        ok, said = _http(api.port, "/healthz")
        return _http(api.verify_port, "/healthz") if ok and api.verify_port else (ok, said)
    if service == "stripe-standin":
        return _http(load(StandinSettings, environ).standin_port, "/_standin/healthz")
    return False, f"unknown service {service!r} (one of {', '.join(SERVICES)})"


def register(subparsers: Subparsers) -> None:
    health = subparsers.add_parser(
        "health", help="exit 0 if a local service is serving (Docker HEALTHCHECK)"
    )
    health.add_argument(
        "service",
        nargs="?",
        help="authz, webhook, metering, receiver, "
        "portal, api or stripe-standin (default: the one PID 1 runs)",
    )


def run(args: argparse.Namespace) -> int:
    service = args.service or service_of_pid1()
    if service is None:
        print(f"tollway health: name a service ({', '.join(SERVICES)}); PID 1 runs none of them")
        return 1
    try:
        ok, detail = check(service, os.environ)
    except SettingsError as exc:
        ok, detail = False, str(exc)
    print(f"{service}: {'serving' if ok else 'not serving'} ({detail})")
    return 0 if ok else 1
