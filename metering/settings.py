"""The metering daemon's settings, read from ``TOLLWAY_*`` and ``STRIPE_*`` (tollway.settings.load)."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.settings import SettingsError, StoreSettings, StripeSettings, env

SINKS = ("v1", "stream")


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
    send_lock_s: float = env("TOLLWAY_METERING_SEND_LOCK_S", 10.0, "per-customer send lock")
    # v1: one meter event per request. stream: Stripe's v2 meter event stream, 100 a request.
    sink: str = env("TOLLWAY_METERING_SINK", "v1", "v1 or stream")
    # Warn well before Stripe's 35-day limit on backdated events makes usage unbillable.
    max_age_warn_days: float = env("TOLLWAY_METERING_WARN_DAYS", 25.0, "warn when usage is older")
    log_level: str = env("TOLLWAY_LOG_LEVEL", "INFO", "log level")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sink not in SINKS:
            raise SettingsError(
                f"TOLLWAY_METERING_SINK={self.sink!r}: expected one of {', '.join(SINKS)}"
            )
