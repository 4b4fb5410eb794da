"""Balance alerts of a prepaid account: what is due and what is sent. No I/O.

They go out as the usage alerts do (portal/alerter.py: the customer's email, and the signed
POST to the operator's URL, retried, once each), when the balance falls:

- below the tier's ``low_credits`` (``credits.low``), if it sets one;
- below one request's credits, so that requests are refused (``credits.exhausted``).

Once per crossing: each is raised once after each top-up (a purchase, a grant, an upward
adjustment: the ledger entry it follows names it, ``epoch``), so a balance that is topped up
and falls again alerts again, and one that stays low alerts once. The body:

    {"id": "alert_<account>_credits_<epoch>_<level>",      the same on every retry
     "type": "credits.low" | "credits.exhausted",
     "created": 1790000000,
     "data": {"account": "free_…", "customer": "free_…", "tier": "payg", "level": "low",
              "balance": 90, "threshold": 100, "epoch": "1790000000000-0"}}
"""

from __future__ import annotations

from dataclasses import dataclass

KIND = "credits"  # an alert record's "kind" (a usage alert's records carry none)


@dataclass(frozen=True)
class CreditAlert:
    account: str
    customer: str
    tier: str
    level: str  # "low" or "exhausted"
    balance: int  # when it was raised
    threshold: int  # the balance below which it is raised
    epoch: str  # the ledger entry of the top-up it follows ("0": none yet)

    @property
    def id(self) -> str:
        return f"alert_{self.account}_credits_{self.epoch}_{self.level}"

    @property
    def type(self) -> str:
        return f"credits.{self.level}"

    @property
    def field(self) -> str:
        """Its field in the account's alerts hash: one per top-up and level."""
        return f"credits:{self.epoch}:{self.level}"


def due(balance: int, per_request: int, low: int) -> list[tuple[str, int]]:
    """(level, threshold) of each level the balance is below."""
    out = []
    if low > 0 and balance < low:
        out.append(("low", low))
    if balance < per_request:
        out.append(("exhausted", per_request))
    return out


def email(alert: CreditAlert) -> tuple[str, str]:
    """(subject, text) of the customer's email."""
    if alert.level == "exhausted":
        subject = f"Your {alert.tier} credits are used up"
        text = (
            f"Your API account's balance is {alert.balance:,} credits: requests are refused "
            "(402 credits_exhausted) until you buy more credits on your account's page.\n"
        )
    else:
        subject = f"Your {alert.tier} credits are running low"
        text = (
            f"Your API account's balance is {alert.balance:,} credits, below "
            f"{alert.threshold:,}. Buy more on your account's page to keep calling the API.\n"
        )
    return subject, text
