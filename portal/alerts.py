"""Usage alerts: what is due and what is sent. No I/O.

At 80 % and at 100 % of an account's quota, once per billing period each, the customer gets
an email and the operator's URL (``TOLLWAY_ALERT_WEBHOOK_URL``) a signed POST of this body:

    {"id": "alert_<account>_<period start>_<threshold>",   the same on every retry
     "type": "usage.threshold_reached",
     "created": 1790000000,                                when the alert was raised (epoch s)
     "data": {"account": "cus_…", "customer": "cus_…", "tier": "pro",
              "threshold_percent": 80, "used": 800, "quota": 1000,
              "period_start": 1790000000, "period_end": 1792592000}}

signed as Stripe signs its webhooks: header ``Tollway-Signature: t=<unix s>,v1=<hex>``, where
hex is HMAC-SHA256 with ``TOLLWAY_ALERT_WEBHOOK_SECRET`` over ``<t>.<raw body>``. The
receiver checks the signature and that t is recent, and drops an id it has seen (a retry after
a lost answer repeats it). ``Tollway-Alert-Id`` carries the id too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tollway.compare import same

if TYPE_CHECKING:
    from portal.credit_alerts import CreditAlert

THRESHOLDS = (80, 100)
SIGNATURE_HEADER = "Tollway-Signature"
ID_HEADER = "Tollway-Alert-Id"


@dataclass(frozen=True)
class Alert:
    account: str
    customer: str
    tier: str
    threshold_percent: int
    used: int
    quota: int
    period_start: int
    period_end: int

    @property
    def id(self) -> str:
        return f"alert_{self.account}_{self.period_start}_{self.threshold_percent}"

    @property
    def type(self) -> str:
        return "usage.threshold_reached"

    @property
    def field(self) -> str:
        """Its field in the account's alerts hash: one per period and threshold."""
        return f"{self.period_start}:{self.threshold_percent}"


def due(used: int, quota: int) -> list[int]:
    """The thresholds ``used`` has reached (exactly: 800 of 1,000 is 80 %; 799 is not)."""
    if quota <= 0:
        return []
    return [t for t in THRESHOLDS if used * 100 >= t * quota]


def body(alert: Alert | CreditAlert, created: int) -> bytes:
    """The operator's POST body of a usage alert, or of a prepaid balance's."""
    return json.dumps(
        {
            "id": alert.id,
            "type": alert.type,
            "created": created,
            "data": asdict(alert),
        },
        separators=(",", ":"),
    ).encode()


def sign(raw: bytes, secret: str, t: int) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(raw: bytes, header: str, secret: str, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does (and the tests): the signature matches and t is recent."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts.get("t", ""))
    except ValueError:
        return False
    expected = sign(raw, secret, t).split("v1=", 1)[1]
    return abs(now - t) <= tolerance_s and same(expected, parts.get("v1", ""))


def email(alert: Alert) -> tuple[str, str]:
    """(subject, text) of the customer's email."""
    ends = datetime.fromtimestamp(alert.period_end, UTC).strftime("%Y-%m-%d")
    if alert.threshold_percent >= 100:
        subject = f"You have used all of your {alert.tier} plan's quota"
    else:
        subject = f"You have used {alert.threshold_percent}% of your {alert.tier} plan's quota"
    text = (
        f"Your API account has used {alert.used:,} of its {alert.quota:,} requests this "
        f"period ({alert.threshold_percent}%). The quota resets on {ends}.\n"
    )
    return subject, text
