"""Prometheus metrics for the portal, served on its own port (TOLLWAY_PORTAL_METRICS_PORT), never
on the port customers reach: sign-ins and usage alerts. Module-level, as the tier reloads are:
one set per process."""

from __future__ import annotations

from prometheus_client import Counter

SIGNINS = Counter(
    "tollway_portal_signins_total",
    "Sign-in steps by result: link_asked (a link mailed if the address has an account),"
    " throttled (429), signed_in, link_gone (used or expired)",
    ["result"],
)
ALERTS = Counter(
    "tollway_portal_alerts_total",
    "Usage alerts by channel (email, webhook) and outcome (sent, failed: given up after every"
    " attempt)",
    ["channel", "outcome"],
)
