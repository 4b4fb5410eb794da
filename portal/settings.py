"""The portal's settings, read from ``TOLLWAY_*`` (tollway.settings.load)."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.settings import (
    BackendSettings,
    ProxySettings,
    RedisSettings,
    SettingsError,
    StripeSettings,
    env,
    listed,
)


@dataclass(frozen=True)
class PortalSettings(RedisSettings, StripeSettings, ProxySettings, BackendSettings):
    """The customer portal."""

    host: str = env("TOLLWAY_PORTAL_HOST", "127.0.0.1", "address the portal binds")
    port: int = env("TOLLWAY_PORTAL_PORT", 8083, "portal HTTP port")
    # Prometheus, on a port of its own: the portal's own port faces the internet.
    metrics_port: int = env(
        "TOLLWAY_PORTAL_METRICS_PORT", 9195, "Prometheus /metrics port (0: off); keep it internal"
    )
    # Where customers reach the portal: the base of every link it emails, and whether its
    # cookies are Secure (an https URL).
    public_url: str = env("TOLLWAY_PORTAL_URL", "http://127.0.0.1:8083", "the portal's own URL")
    # Where customers call the API (through Envoy): the curl line a new key is shown with.
    api_url: str = env("TOLLWAY_PUBLIC_API_URL", "http://127.0.0.1:10000", "the API's URL")
    # The webhook service, server to server: Checkout and the one-time key claim go through it.
    webhook_url: str = env(
        "TOLLWAY_PORTAL_WEBHOOK_URL",
        "http://127.0.0.1:8081",
        "the webhook service, as the portal reaches it",
    )
    # Signs session cookies and CSRF tokens. Required: a portal cannot run without one.
    # Origins besides Stripe's Checkout and Customer Portal (and the API base's, when set) that
    # Subscribe and Manage billing may redirect a form to: the Content-Security-CheckTiers's
    # form-action. Space-separated; e.g. a stand-in's pages reached under another name.
    stripe_pages: str = env("TOLLWAY_PORTAL_STRIPE_PAGES", "", "more origins forms may lead to")
    session_secret: str = env(
        "TOLLWAY_PORTAL_SECRET",
        "",
        "signs sessions and CSRF tokens; several, comma-separated, while rotating (signs with"
        " the first, accepts any)",
        secret=True,
    )
    session_ttl_s: int = env("TOLLWAY_PORTAL_SESSION_S", 12 * 3600, "how long a sign-in lasts")
    signin_ttl_s: int = env("TOLLWAY_SIGNIN_TTL_S", 900, "how long a sign-in link works")
    # Sign-in links asked for, per address and per client IP, within signin_ttl_s.
    signin_per_address: int = env("TOLLWAY_SIGNIN_PER_ADDRESS", 3, "links per address")
    signin_per_ip: int = env("TOLLWAY_SIGNIN_PER_IP", 10, "links per IP")
    # Subscribe (a Checkout Session) and the welcome page (a key claim) per client address per
    # 15 minutes: each can cost a call on the operator's Stripe rate limit.
    per_client: int = env("TOLLWAY_PORTAL_PER_CLIENT", 30, "Checkouts and claims per client")
    smtp_host: str = env("TOLLWAY_SMTP_HOST", "127.0.0.1", "SMTP server for sign-in mail")
    smtp_port: int = env("TOLLWAY_SMTP_PORT", 2525, "SMTP port (`tollway dev` runs a sink)")
    mail_from: str = env("TOLLWAY_MAIL_FROM", "tollway <no-reply@localhost>", "sender address")
    # Usage alerts at 80 % and 100 % of the quota (portal/alerts.py documents the webhook).
    alert_webhook_url: str = env(
        "TOLLWAY_ALERT_WEBHOOK_URL", "", "operator URL for signed usage alerts ('' for none)"
    )
    alert_webhook_secret: str = env(
        "TOLLWAY_ALERT_WEBHOOK_SECRET", "", "signs usage alerts (HMAC-SHA256)", secret=True
    )
    alert_interval_s: float = env(
        "TOLLWAY_ALERT_INTERVAL_S", 10.0, "how often quotas are checked for alerts (0: no alerts)"
    )
    # Prepaid accounts' auto-recharge (portal/recharger.py); needs Stripe.
    recharge_interval_s: float = env(
        "TOLLWAY_RECHARGE_INTERVAL_S",
        10.0,
        "how often balances are checked for auto-recharge and credit expiry (0: off)",
    )
    alert_attempts: int = env("TOLLWAY_ALERT_ATTEMPTS", 8, "tries per alert before it is logged")
    alert_retry_s: float = env("TOLLWAY_ALERT_RETRY_S", 5.0, "first retry delay, then doubling")

    @property
    def session_secrets(self) -> list[str]:
        """TOLLWAY_PORTAL_SECRET's secrets, the one to sign with first."""
        return listed(self.session_secret)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.session_secrets or any(len(x) < 16 for x in self.session_secrets):
            raise SettingsError(
                "TOLLWAY_PORTAL_SECRET must be set to at least 16 characters (each of them, "
                "when several are listed while rotating): it signs customers' sessions"
            )
        if self.alert_webhook_url and len(self.alert_webhook_secret) < 16:
            raise SettingsError(
                "TOLLWAY_ALERT_WEBHOOK_SECRET must be set to at least 16 characters when "
                "TOLLWAY_ALERT_WEBHOOK_URL is: it signs the alerts"
            )
        if self.alert_webhook_url and not self.alert_webhook_url.startswith(
            ("http://", "https://")
        ):
            raise SettingsError(
                f"TOLLWAY_ALERT_WEBHOOK_URL={self.alert_webhook_url!r}: expected http(s)://"
            )
        if self.recharge_interval_s < 0:
            raise SettingsError("TOLLWAY_RECHARGE_INTERVAL_S must be >= 0")
        if self.alert_attempts < 1 or self.alert_retry_s <= 0 or self.alert_interval_s < 0:
            raise SettingsError(
                "TOLLWAY_ALERT_ATTEMPTS must be >= 1, TOLLWAY_ALERT_RETRY_S > 0 "
                "and TOLLWAY_ALERT_INTERVAL_S >= 0"
            )
        if not self.public_url.startswith(("http://", "https://")):
            raise SettingsError(f"TOLLWAY_PORTAL_URL={self.public_url!r}: expected http(s)://")

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")
