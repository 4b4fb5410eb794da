"""Settings of the dev kit: ``tollway dev`` and the Stripe stand-in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tollway.settings import RedisSettings, StripeSettings, env


@dataclass(frozen=True)
class DevSettings(RedisSettings):
    """``tollway dev``: the whole local stack; every port can be moved so two stacks coexist."""

    envoy_port: int = env("TOLLWAY_ENVOY_PORT", 10000, "Envoy listener (the API clients call)")
    envoy_admin_port: int = env("TOLLWAY_ENVOY_ADMIN_PORT", 9901, "Envoy admin")
    authz_mode: str = env("TOLLWAY_AUTHZ_MODE", "grpc", "authz's ext_authz mode: grpc or http")
    authz_port: int = env("TOLLWAY_AUTHZ_PORT", 9191, "authz (gRPC or HTTP)")
    authz_metrics_port: int = env("TOLLWAY_AUTHZ_METRICS_PORT", 9192, "authz /metrics")
    upstream_port: int = env("TOLLWAY_UPSTREAM_PORT", 8080, "demo echo upstream")
    # Not 6379, so that a system Redis on the default port is never touched.
    redis_port: int = env("TOLLWAY_DEV_REDIS_PORT", 6380, "the dev stack's own redis-server")
    webhook_port: int = env("TOLLWAY_WEBHOOK_PORT", 8081, "webhook service")
    standin_port: int = env("TOLLWAY_STANDIN_PORT", 12111, "the Stripe stand-in")
    metering_port: int = env("TOLLWAY_METERING_PORT", 8082, "metering /healthz and /metrics")
    receiver_port: int = env("TOLLWAY_ACCESSLOG_PORT", 9193, "the access-log receiver (gRPC)")
    receiver_metrics_port: int = env("TOLLWAY_ACCESSLOG_METRICS_PORT", 9194, "its /metrics")
    portal_port: int = env("TOLLWAY_PORTAL_PORT", 8083, "the customer portal")
    api_port: int = env("TOLLWAY_API_PORT", 8084, "the management API")
    api_verify_port: int = env("TOLLWAY_API_VERIFY_PORT", 8085, "its verify listener")
    smtp_port: int = env("TOLLWAY_SMTP_PORT", 2525, "the dev SMTP sink (prints the mail)")
    state_dir: Path = env("TOLLWAY_DEV_DIR", Path(".tollway/dev"), "logs, rendered configs")


@dataclass(frozen=True)
class StandinSettings(StripeSettings):
    """The local Stripe stand-in."""

    host: str = env("TOLLWAY_STANDIN_HOST", "127.0.0.1", "address the stand-in binds")
    standin_port: int = env("TOLLWAY_STANDIN_PORT", 12111, "stand-in HTTP port")
    # Where the stand-in delivers signed webhooks for what happens in it ("" = nowhere).
    webhook_url: str = env("TOLLWAY_STANDIN_WEBHOOK_URL", "", "webhook endpoint to deliver to")
    # The base of its Checkout and Customer Portal page URLs, as a browser reaches them
    # ("" = http://host:port).
    public_url: str = env("TOLLWAY_STANDIN_PUBLIC_URL", "", "the stand-in's pages, for browsers")
