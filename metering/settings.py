"""The metering daemon's settings, read from ``TOLLWAY_*`` and ``STRIPE_*`` (tollway.settings.load)."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.settings import (
    RedisSettings,
    SettingsError,
    StripeSettings,
    TlsSettings,
    UsageLogSettings,
    UsageWindowSettings,
    env,
)

SINKS = ("v1", "stream")


@dataclass(frozen=True)
class MeteringSettings(RedisSettings, StripeSettings, UsageWindowSettings):
    """The metering daemon."""

    host: str = env("TOLLWAY_METERING_HOST", "127.0.0.1", "address /healthz and /metrics bind")
    port: int = env("TOLLWAY_METERING_PORT", 8082, "/healthz and /metrics port")
    interval_s: float = env("TOLLWAY_METERING_INTERVAL", 60.0, "seconds between drains")
    # authz counts with Redis TIME and so does the drain, so a little slack is plenty.
    close_slack_s: int = env("TOLLWAY_METERING_CLOSE_SLACK_S", 2, "wait after a window ends")
    # Envoy flushes its access log every second; this leaves room for a stream to break and
    # reconnect. Every window reaches Stripe this much later (README "What is billed").
    log_grace_s: int = env(
        "TOLLWAY_METERING_LOG_GRACE_S", 30, "wait for the access log's refunds after a window"
    )
    # A refund whose window was sent is taken off the account's next window; one that finds
    # none this long becomes a dead letter (kind "refund") for the operator.
    refund_carry_s: int = env(
        "TOLLWAY_METERING_REFUND_CARRY_S", 86400, "carry a late refund this long, then park it"
    )
    # Stripe's live-mode limit for meter events.
    rate_per_s: float = env("TOLLWAY_METERING_RATE", 1000.0, "max meter events sent per second")
    attempts: int = env("TOLLWAY_METERING_ATTEMPTS", 6, "tries per event per drain")
    # How long a daemon may go silent before another takes its customers over. It is renewed
    # before every send, so it only has to outlast one event's retries.
    send_lock_s: float = env("TOLLWAY_METERING_SEND_LOCK_S", 10.0, "per-customer send lock")
    # v1: one meter event per request. stream: Stripe's v2 meter event stream, 100 a request.
    sink: str = env("TOLLWAY_METERING_SINK", "v1", "v1 or stream")
    # Warn well before Stripe's 35-day limit on backdated events makes usage unbillable.
    max_age_warn_days: float = env("TOLLWAY_METERING_WARN_DAYS", 25.0, "warn when usage is older")

    @property
    def window_slack_s(self) -> int:
        """How long after its end a usage window closes."""
        return self.close_slack_s + self.log_grace_s

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sink not in SINKS:
            raise SettingsError(
                f"TOLLWAY_METERING_SINK={self.sink!r}: expected one of {', '.join(SINKS)}"
            )


@dataclass(frozen=True)
class ReceiverSettings(RedisSettings, UsageLogSettings, UsageWindowSettings, TlsSettings):
    """The access-log receiver (metering/receiver.py): Envoy's gRPC access log in."""

    # Only Envoy should reach it: bind loopback, or a mesh-internal address behind mTLS and
    # an AuthorizationPolicy (README "What is billed").
    host: str = env("TOLLWAY_ACCESSLOG_HOST", "127.0.0.1", "address the receiver binds")
    port: int = env("TOLLWAY_ACCESSLOG_PORT", 9193, "gRPC port Envoy streams its log to")
    metrics_port: int = env("TOLLWAY_ACCESSLOG_METRICS_PORT", 9194, "/healthz and /metrics")
    # An entry older than this is ignored: its request ids are no longer remembered, so it
    # could not be told from a replay. Envoy sends within seconds.
    max_age_s: int = env("TOLLWAY_ACCESSLOG_MAX_AGE_S", 900, "ignore entries older than this")
    amount_max: int = env(
        "TOLLWAY_USAGE_AMOUNT_MAX", 10_000_000, "largest amount one response may report"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_tls()
        if not self.usage_log_secret:
            raise SettingsError(
                "TOLLWAY_USAGE_LOG_SECRET is not set: the receiver cannot tell authz's stamps "
                "from forged ones (set the same secret for authz)"
            )
