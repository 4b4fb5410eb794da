"""authz's settings: the ext_authz server, read from ``TOLLWAY_*`` (tollway.settings.load)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tollway.settings import (
    RedisSettings,
    SettingsError,
    TlsSettings,
    UsageLogSettings,
    UsageWindowSettings,
    env,
)

MODES = ("grpc", "http")


@dataclass(frozen=True)
class CheckSettings(RedisSettings, UsageLogSettings, UsageWindowSettings):
    """The check engine (authz/engine.py): what a decision needs, wherever it is served (authz
    to Envoy; the management API's verify)."""

    # Redis socket read/connect timeout: how a hung or dead Redis is detected. It must fire
    # well inside Envoy's 250 ms ext_authz timeout so that the tier's on_store_error policy,
    # not Envoy's status_on_error, decides the answer. Not lower: at 50 ms, make bench saw a
    # healthy Redis reported as failed under saturation (an event loop stalled past 50 ms).
    store_timeout_ms: float = env("TOLLWAY_STORE_TIMEOUT_MS", 100.0, "Redis socket timeout")
    # The whole check's budget, queueing included. Past it the process is overloaded, not
    # Redis broken: shed with 503 overloaded, without tripping the breaker or degrading.
    check_deadline_ms: float = env("TOLLWAY_CHECK_DEADLINE_MS", 200.0, "budget for one check")
    # Opening after a few consecutive failures stops a dead Redis from costing every request
    # a full timeout; the cooldown is short so recovery is noticed within a second or two.
    breaker_failures: int = env("TOLLWAY_BREAKER_FAILURES", 3, "failures that open the breaker")
    breaker_cooldown_s: float = env("TOLLWAY_BREAKER_COOLDOWN_S", 1.0, "open time before a probe")
    # Lease tiers (limiter = "lease"): how long a lease may be spent locally before it is
    # settled; also the most a key's state change can take to reach a lease if pub/sub is down.
    lease_ttl_ms: float = env("TOLLWAY_LEASE_TTL_MS", 1000.0, "lease tiers: lease lifetime")
    # Every denial, dry-run and degraded decision is logged; allowed ones are this share of
    # all (0 to 1), each named by Envoy's x-request-id to match Envoy's access log.
    log_allowed: float = env(
        "TOLLWAY_AUTHZ_LOG_ALLOWED", 0.0, "share of allowed decisions logged, 0 to 1"
    )
    # Where usage counted while Redis was down is kept if the process must exit before Redis
    # returns; the next start writes it back.
    spool_dir: Path = env("TOLLWAY_SPOOL_DIR", Path(".tollway/spool"), "unflushed usage on exit")
    # Keys each process remembers (a presented key's digest and id; a key id's account and
    # tier). A key it has forgotten costs a hash and one more Redis round trip (make bench
    # row 6: with each request a key not seen within the last 300,000, 0.62 of the rate).
    # Size it to the keys active within a few minutes; each costs about 0.5 KB a process.
    key_cache: int = env("TOLLWAY_AUTHZ_KEY_CACHE", 100_000, "keys each process remembers")
    # max_concurrent tiers: a request's slot is freed when Envoy's access log reports it ended,
    # and at the latest this long after its check (a lost entry, an Envoy gone). Set it above
    # your longest route timeout plus the access log's flush interval (0.5 s in envoy.yaml): a
    # request still in flight past it no longer holds its slot. Default: Envoy's 15 s route
    # timeout, and margin.
    slot_s: float = env(
        "TOLLWAY_AUTHZ_SLOT_S", 30.0, "max_concurrent: longest a request holds its slot"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.log_allowed <= 1.0:
            raise SettingsError(f"TOLLWAY_AUTHZ_LOG_ALLOWED={self.log_allowed}: expected 0 to 1")
        if not 0 < self.slot_s <= 86400:
            raise SettingsError(f"TOLLWAY_AUTHZ_SLOT_S={self.slot_s}: expected 0 to 86400 s")
        if self.key_cache < 1:
            raise SettingsError(f"TOLLWAY_AUTHZ_KEY_CACHE={self.key_cache}: expected 1 or more")


@dataclass(frozen=True)
class AuthzSettings(CheckSettings, TlsSettings):
    """The ext_authz server."""

    # Envoy's two ext_authz transports: grpc_service (authz speaks envoy.service.auth.v3 over
    # HTTP/2) or http_service (plain HTTP/1.1 on uvloop + httptools; cheaper per check).
    mode: str = env("TOLLWAY_AUTHZ_MODE", "grpc", "grpc or http: Envoy's ext_authz transport")
    host: str = env("TOLLWAY_AUTHZ_HOST", "127.0.0.1", "address the server binds")
    port: int = env("TOLLWAY_AUTHZ_PORT", 9191, "port Envoy calls")
    # Each worker serves Prometheus on metrics_port + its index; 0 turns metrics off.
    metrics_port: int = env("TOLLWAY_AUTHZ_METRICS_PORT", 9192, "Prometheus /metrics port")
    workers: int = env("TOLLWAY_AUTHZ_WORKERS", 1, "processes sharing the port (SO_REUSEPORT)")
    # SO_REUSEPORT lets the kernel hash each connection to one worker, and Envoy opens only one
    # HTTP/2 connection per thread, so all traffic can land on one worker. With a base port,
    # worker i also listens on base + i; list those as the Envoy cluster's endpoints and its
    # load balancer spreads requests over every worker.
    worker_port_base: int = env("TOLLWAY_AUTHZ_WORKER_PORT_BASE", 0, "worker i also on base + i")
    shutdown_grace_s: float = env("TOLLWAY_SHUTDOWN_GRACE_S", 5.0, "time to finish calls on exit")
    # On SIGTERM, authz reports NOT_SERVING but keeps answering for this long before it closes
    # its ports, so that Envoy's health check (every 0.5 s in envoy.yaml) moves traffic away
    # first: a rolling restart then fails no request.
    drain_s: float = env("TOLLWAY_AUTHZ_DRAIN_S", 1.0, "NOT_SERVING before closing, on SIGTERM")
    # HTTP mode: what one connection may cost (authz/http_front.py). Envoy closes its idle
    # connections to authz after 60 s (envoy-http.yaml), before authz does, so that a request
    # never meets a connection authz is closing.
    http_idle_s: float = env(
        "TOLLWAY_AUTHZ_HTTP_IDLE_S", 300.0, "HTTP mode: close a connection idle this long"
    )
    http_head_s: float = env(
        "TOLLWAY_AUTHZ_HTTP_HEAD_S",
        10.0,
        "HTTP mode: a request (head and body) must arrive within this (else 408)",
    )
    http_max_connections: int = env(
        "TOLLWAY_AUTHZ_HTTP_MAX_CONNECTIONS", 4096, "HTTP mode: open connections per process"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_tls()
        if self.mode not in MODES:
            raise SettingsError(
                f"TOLLWAY_AUTHZ_MODE={self.mode!r}: expected one of {', '.join(MODES)}"
            )
