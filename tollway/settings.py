"""Typed, frozen settings for each tollway service, read once from a ``TOLLWAY_*`` environment.

Every field names its environment variable in its metadata and has a default. ``load(cls, env)``
takes any ``Mapping[str, str]`` so tests pass a dict rather than patching ``os.environ``;
command-line flags are applied afterwards with ``dataclasses.replace``.

Raises ``SettingsError`` (a ``ValueError``) naming the variable and the bad value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# The example tier table that ships inside the package, used when no path is configured.
DEFAULT_TIERS = Path(__file__).parent / "data" / "tiers.toml"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CLUSTER_SCHEME = "redis+cluster://"  # a Redis Cluster, reached through any of its nodes
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", CLUSTER_SCHEME)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def env(name: str, default: Any, doc: str) -> Any:
    """Declare a settings field read from environment variable ``name``."""
    return field(default=default, metadata={"env": name, "doc": doc})


def _convert(name: str, raw: str, kind: Any) -> Any:
    if kind is bool:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise SettingsError(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")
    if kind is int or kind is float:
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: expected {kind.__name__}") from None
        if value < 0:
            raise SettingsError(f"{name}={raw!r}: must not be negative")
        return value
    if kind is Path:
        return Path(raw)
    return raw


def load(cls: type[T], environ: Mapping[str, str]) -> T:
    """Build settings ``cls`` from ``environ``; unset variables keep the field's default."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f.metadata.get("env")
        if name is None or name not in environ:
            continue
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # "Path | None" and the like
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        values[f.name] = _convert(name, environ[name], kind)
    return cls(**values)


def describe(cls: type[Any]) -> list[tuple[str, str, str]]:
    """(variable, default, doc) rows for ``cls``: what the README's settings tables list."""
    return [
        (f.metadata["env"], repr(f.default), f.metadata["doc"])
        for f in dataclasses.fields(cls)
        if "env" in f.metadata
    ]


@dataclass(frozen=True)
class StoreSettings:
    """What every process needs to reach Redis and read the tier table."""

    redis_url: str = env("TOLLWAY_REDIS_URL", DEFAULT_REDIS_URL, "Redis to keep key state in")
    # A Redis Cluster is chosen by a redis+cluster://host:port URL (any node), or by this.
    redis_cluster: bool = env("TOLLWAY_REDIS_CLUSTER", False, "the Redis URL is a cluster node")
    tiers: Path = env("TOLLWAY_TIERS", DEFAULT_TIERS, "the tier table (TOML)")
    # HMAC pepper for key hashes. Empty means plain SHA-256; set it in production so a leaked
    # Redis dump cannot be checked against guessed keys offline.
    key_pepper: str = env("TOLLWAY_KEY_PEPPER", "", "server secret mixed into key hashes")
    # uvloop measured +11% checks/s for authz against asyncio's loop (make bench, same run).
    event_loop: str = env("TOLLWAY_EVENT_LOOP", "uvloop", "uvloop, or asyncio")

    def __post_init__(self) -> None:
        url = self.redis_url
        if not url.startswith(REDIS_SCHEMES):
            raise SettingsError(
                f"TOLLWAY_REDIS_URL={url!r}: expected one of {', '.join(REDIS_SCHEMES)}"
            )
        if self.redis_cluster and url.startswith("redis://"):
            # Frozen: the one place a field is rewritten, so every service connects the same way.
            object.__setattr__(self, "redis_url", CLUSTER_SCHEME + url.removeprefix("redis://"))


@dataclass(frozen=True)
class AuthzSettings(StoreSettings):
    """The ext_authz gRPC server."""

    host: str = env("TOLLWAY_AUTHZ_HOST", "127.0.0.1", "address the gRPC server binds")
    port: int = env("TOLLWAY_AUTHZ_PORT", 9191, "gRPC port Envoy calls")
    # Each worker serves Prometheus on metrics_port + its index; 0 turns metrics off.
    metrics_port: int = env("TOLLWAY_AUTHZ_METRICS_PORT", 9192, "Prometheus /metrics port")
    workers: int = env("TOLLWAY_AUTHZ_WORKERS", 1, "processes sharing the port (SO_REUSEPORT)")
    # SO_REUSEPORT lets the kernel hash each connection to one worker, and Envoy opens only one
    # HTTP/2 connection per thread, so all traffic can land on one worker. With a base port,
    # worker i also listens on base + i; list those as the Envoy cluster's endpoints and its
    # load balancer spreads requests over every worker.
    worker_port_base: int = env("TOLLWAY_AUTHZ_WORKER_PORT_BASE", 0, "worker i also on base + i")
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
    # Usage is counted per key per window; metering drains closed windows.
    usage_window_s: int = env("TOLLWAY_USAGE_WINDOW_S", 60, "usage counter window in seconds")
    # Where usage counted while Redis was down is kept if the process must exit before Redis
    # returns; the next start writes it back.
    spool_dir: Path = env("TOLLWAY_SPOOL_DIR", Path(".tollway/spool"), "unflushed usage on exit")
    shutdown_grace_s: float = env("TOLLWAY_SHUTDOWN_GRACE_S", 5.0, "time to finish calls on exit")
    # On SIGTERM, authz reports NOT_SERVING but keeps answering for this long before it closes
    # its ports, so that Envoy's health check (every 0.5 s in envoy.yaml) moves traffic away
    # first: a rolling restart then fails no request.
    drain_s: float = env("TOLLWAY_AUTHZ_DRAIN_S", 1.0, "NOT_SERVING before closing, on SIGTERM")
    log_level: str = env("TOLLWAY_LOG_LEVEL", "INFO", "log level")


@dataclass(frozen=True)
class DevSettings(StoreSettings):
    """``tollway dev``: the whole local stack; every port can be moved so two stacks coexist."""

    envoy_port: int = env("TOLLWAY_ENVOY_PORT", 10000, "Envoy listener (the API clients call)")
    envoy_admin_port: int = env("TOLLWAY_ENVOY_ADMIN_PORT", 9901, "Envoy admin")
    authz_port: int = env("TOLLWAY_AUTHZ_PORT", 9191, "authz gRPC")
    authz_metrics_port: int = env("TOLLWAY_AUTHZ_METRICS_PORT", 9192, "authz /metrics")
    upstream_port: int = env("TOLLWAY_UPSTREAM_PORT", 8080, "demo echo upstream")
    # Not 6379, so that a system Redis on the default port is never touched.
    redis_port: int = env("TOLLWAY_DEV_REDIS_PORT", 6380, "the dev stack's own redis-server")
    webhook_port: int = env("TOLLWAY_WEBHOOK_PORT", 8081, "webhook service")
    standin_port: int = env("TOLLWAY_STANDIN_PORT", 12111, "the Stripe stand-in")
    metering_port: int = env("TOLLWAY_METERING_PORT", 8082, "metering /healthz and /metrics")
    state_dir: Path = env("TOLLWAY_DEV_DIR", Path(".tollway/dev"), "logs, rendered configs")


@dataclass(frozen=True)
class StripeSettings:
    """How to reach Stripe: the real API, or the local stand-in when api_base is set."""

    stripe_api_key: str = env("STRIPE_API_KEY", "", "Stripe secret key (sk_...)")
    # Where the stripe SDK is pointed: the stand-in's URL in tests and `make run`.
    stripe_api_base: str = env("TOLLWAY_STRIPE_API_BASE", "", "Stripe API base URL override")
    # One or more secrets, comma-separated, so a secret can be rotated without dropping events.
    webhook_secrets: str = env(
        "STRIPE_WEBHOOK_SECRET", "", "webhook signing secret(s), comma-separated"
    )

    @property
    def secrets(self) -> list[str]:
        return [s.strip() for s in self.webhook_secrets.split(",") if s.strip()]


@dataclass(frozen=True)
class WebhookSettings(StoreSettings, StripeSettings):
    """The Stripe webhook service."""

    host: str = env("TOLLWAY_WEBHOOK_HOST", "127.0.0.1", "address the webhook service binds")
    port: int = env("TOLLWAY_WEBHOOK_PORT", 8081, "webhook HTTP port")
    # Stripe's own default tolerance; a replayed old delivery is refused past it.
    tolerance_s: int = env("TOLLWAY_WEBHOOK_TOLERANCE_S", 300, "max age of a signed delivery")
    max_body_bytes: int = env("TOLLWAY_WEBHOOK_MAX_BODY", 1 << 20, "larger bodies get 413")
    grace_days: float = env("TOLLWAY_GRACE_DAYS", 3.0, "days a past_due key keeps working")
    # Stripe's advice for out-of-order delivery: fetch the object and apply its current state.
    refetch: bool = env("TOLLWAY_WEBHOOK_REFETCH", False, "re-fetch subscriptions from Stripe")
    # Stripe replaces {CHECKOUT_SESSION_ID}; pointing success at the claim route hands the key
    # straight to the customer.
    success_url: str = env(
        "TOLLWAY_CHECKOUT_SUCCESS_URL",
        "http://127.0.0.1:8081/keys/claim?session_id={CHECKOUT_SESSION_ID}",
        "where Checkout sends the customer after paying",
    )
    cancel_url: str = env(
        "TOLLWAY_CHECKOUT_CANCEL_URL", "http://127.0.0.1:8081/", "where an abandoned Checkout goes"
    )
    claim_ttl_s: int = env("TOLLWAY_CLAIM_TTL_S", 900, "how long an unclaimed key can be claimed")
    log_level: str = env("TOLLWAY_LOG_LEVEL", "INFO", "log level")


@dataclass(frozen=True)
class StandinSettings(StripeSettings):
    """The local Stripe stand-in."""

    host: str = env("TOLLWAY_STANDIN_HOST", "127.0.0.1", "address the stand-in binds")
    standin_port: int = env("TOLLWAY_STANDIN_PORT", 12111, "stand-in HTTP port")
    # Where the stand-in delivers signed webhooks for what happens in it ("" = nowhere).
    webhook_url: str = env("TOLLWAY_STANDIN_WEBHOOK_URL", "", "webhook endpoint to deliver to")


@dataclass(frozen=True)
class MeteringSettings(StoreSettings, StripeSettings):
    """The metering daemon."""

    host: str = env("TOLLWAY_METERING_HOST", "127.0.0.1", "address /healthz and /metrics bind")
    port: int = env("TOLLWAY_METERING_PORT", 8082, "/healthz and /metrics port")
    interval_s: float = env("TOLLWAY_METERING_INTERVAL", 60.0, "seconds between drains")
    # Must equal authz's: it is how the daemon knows when a window has closed.
    usage_window_s: int = env("TOLLWAY_USAGE_WINDOW_S", 60, "usage counter window in seconds")
    # authz counts with Redis TIME and so does the drain, so a little slack is plenty.
    close_slack_s: int = env("TOLLWAY_METERING_CLOSE_SLACK_S", 2, "wait after a window ends")
    # Stripe's live-mode limit for meter events.
    rate_per_s: float = env("TOLLWAY_METERING_RATE", 1000.0, "max meter events sent per second")
    attempts: int = env("TOLLWAY_METERING_ATTEMPTS", 6, "tries per event per drain")
    # How long a daemon may go silent before another takes its customers over. It is renewed
    # before every send, so it only has to outlast one event's retries.
    lease_s: float = env("TOLLWAY_METERING_LEASE_S", 10.0, "per-customer sending lease")
    # v1: one meter event per request. stream: Stripe's v2 meter event stream, 100 a request.
    mode: str = env("TOLLWAY_METERING_MODE", "v1", "v1 or stream")
    # Warn well before Stripe's 35-day limit on backdated events makes usage unbillable.
    max_age_warn_days: float = env("TOLLWAY_METERING_WARN_DAYS", 25.0, "warn when usage is older")
    log_level: str = env("TOLLWAY_LOG_LEVEL", "INFO", "log level")


def with_flags(cls: type[T], environ: Mapping[str, str], flags: Mapping[str, Any]) -> T:
    """Settings from ``environ``, then every flag that was given (not None) on top."""
    return dataclasses.replace(
        load(cls, environ), **{k: v for k, v in flags.items() if v is not None}
    )  # type: ignore[type-var]
