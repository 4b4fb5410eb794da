"""The webhook service's settings, read from ``TOLLWAY_*`` and ``STRIPE_*`` (tollway.settings.load)."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.settings import BackendSettings, ProxySettings, RedisSettings, StripeSettings, env


@dataclass(frozen=True)
class WebhookSettings(RedisSettings, StripeSettings, ProxySettings, BackendSettings):
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
        "http://127.0.0.1:8083/welcome?session_id={CHECKOUT_SESSION_ID}",
        "where Checkout sends the customer after paying (the portal's welcome page)",
    )
    cancel_url: str = env(
        "TOLLWAY_CHECKOUT_CANCEL_URL",
        "http://127.0.0.1:8083/",
        "where an abandoned Checkout goes (the portal's pricing page)",
    )
    credits_return_url: str = env(
        "TOLLWAY_CREDITS_RETURN_URL",
        "http://127.0.0.1:8083/dashboard",
        "where Checkout sends a customer back after buying credits (the portal's dashboard)",
    )
    claim_ttl_s: int = env("TOLLWAY_CLAIM_TTL_S", 900, "how long an unclaimed key can be claimed")
    # Without a backend token, /checkout and /keys/claim are open: each client address may
    # ask this many of each per 15 minutes (a Checkout Session and an unknown claim each cost
    # a call on the operator's Stripe rate limit).
    per_client: int = env(
        "TOLLWAY_WEBHOOK_PER_CLIENT", 20, "/checkout and /keys/claim per client per 15 min"
    )
