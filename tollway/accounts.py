"""Accounts: what an operator reads about one and changes on it (its tier, its own limits).

An account is the subscription when there is one, otherwise the customer (docs/accounts.md).
It owns the token bucket, the monthly quota and the usage its keys draw on. Its hash
(``schema.account_state``) holds its plan (customer, subscription, tier, status, period,
written when a key is issued and by the webhook) beside that bucket and quota.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tollway import schema, scripts
from tollway.audit import AuditLog
from tollway.errors import InvalidInput, LifecycleError
from tollway.key_store import KeyNotFound, KeyStore
from tollway.logs import fields
from tollway.records import (
    DAY_S,
    DEFAULT_PERIOD_S,
    HOUR_S,
    KeyRecord,
    KeyState,
    Period,
    key_state,
)
from tollway.scripts import Result
from tollway.tiers import Tier, check_limits

log = logging.getLogger("tollway.accounts")

# What an operator may override per account (a tier field -> the account hash's field).
OVERRIDES = {
    "requests_per_second": "o_rate",
    "burst": "o_burst",
    "monthly_quota": "o_quota",
    "features": "o_features",
    "per_day": "o_day",
    "per_hour": "o_hour",
    "max_concurrent": "o_conc",
}


# The account hash's fields check.lua counts per_day and per_hour in: each window's start
# (epoch s) and the requests counted in it.
WINDOWS = ("d_start", "d_used", "h_start", "h_used")


def _in_window(start: str, used: str, now: int, length: int) -> int:
    """What a window's count says of the window containing ``now`` (0 if it is another's)."""
    return int(used or 0) if start and int(start) == now - now % length else 0


@dataclass(frozen=True)
class AccountView:
    account: str
    plan: dict[str, str]  # customer, subscription, tier, status, period_start, period_end, ...
    quota_used: int  # requests counted this period (0 if the stored count is a past period's)
    keys: list[KeyRecord]
    day_used: int = 0  # requests counted this UTC day, against per_day (check.lua)
    hour_used: int = 0  # and this UTC hour, against per_hour
    in_flight: int = 0  # requests holding a concurrency slot now, against max_concurrent
    credits: int = 0  # a prepaid account's balance (tollway/credits.py); may be below zero

    @property
    def hold(self) -> str:
        """An operator's hold on the whole account ("" for none): every key of it is 402."""
        return self.plan.get("hold", "")

    @property
    def tier(self) -> str:
        return self.plan.get("tier") or (self.keys[0].tier if self.keys else "")

    @property
    def customer(self) -> str:
        return self.plan.get("customer") or (self.keys[0].customer if self.keys else "")

    def period(self, now: int) -> tuple[int, int]:
        """The billing period containing ``now``, (start, end) in epoch s: the plan's (or its
        first key's), rolled by whole periods as check.lua rolls the quota."""
        first = self.keys[0] if self.keys else None
        p_start = int(self.plan.get("period_start") or (first.period_start if first else 0))
        p_end = int(self.plan.get("period_end") or (first.period_end if first else 0))
        length = p_end - p_start if p_end > p_start else DEFAULT_PERIOD_S
        start = Period(p_start, p_start + length).start_for(now)
        return start, start + length

    def states(self, now: int) -> dict[str, KeyState]:
        """Each key's state at ``now`` (epoch s), by key id: ``records.key_state``."""
        return {k.key_id: key_state(k, self.hold, now) for k in self.keys}

    def listing(self, now: int) -> list[dict[str, object]]:
        """The account's keys as ``tollway keys list`` shows them, each with its state."""
        return [k.listing(key_state(k, self.hold, now)) for k in self.keys]

    @property
    def overrides(self) -> dict[str, str]:
        """The operator's overrides of the tier, by tier field."""
        return {k: self.plan[f] for k, f in OVERRIDES.items() if f in self.plan}

    def in_force(self, field: str, tier: Tier | None) -> str | None:
        """A limit as it applies to the account, as text: its override, else its tier's
        (None with neither: no override, and its tier is not in the table)."""
        override = self.plan.get(OVERRIDES[field])
        if override is not None:
            return override
        return str(getattr(tier, field)) if tier is not None else None

    def public(self) -> dict[str, object]:
        """The account as an operator may see it, without its keys (``Lifecycle.listing``)."""
        hidden = set(OVERRIDES.values())
        plan = {
            k: v for k, v in self.plan.items() if not k.startswith(("n:", "p:")) and k not in hidden
        }
        return {
            "account": self.account,
            **plan,
            "overrides": self.overrides,
            "quota_used": self.quota_used,
            "day_used": self.day_used,
            "hour_used": self.hour_used,
            "in_flight": self.in_flight,
        }


class Accounts:
    def __init__(self, keys: KeyStore, audit: AuditLog | None = None, actor: str = "cli") -> None:
        """``audit`` and ``actor``: where its changes are recorded, and as whose (as the
        lifecycle's, tollway/lifecycle.py)."""
        self.keys = keys
        self.audit = audit if audit is not None else keys.audit
        self.actor = actor
        self.redis: Any = keys.redis
        self._overrides = scripts.register(self.redis, "set_overrides")
        self._set_tier = scripts.register(self.redis, "set_tier")

    async def set_tier(self, account: str, tier: str) -> int:
        """Move a customer account and all its live keys to ``tier`` at once (the caller checks
        that the tier is in the table). Its bucket and quota carry over. A subscription's tier
        follows its price: refused with ValueError. Returns the keys moved; raises
        KeyNotFound."""
        schema.owned_keys(account)  # raises ValueError for an id unfit for a key name
        plan = await self.redis.hmget(schema.account_state(account), "customer", "subscription")
        if plan[1]:
            raise LifecycleError(
                f"account {account} is a subscription: its tier follows its price in Stripe "
                "(or give it its own limits with set-limits)"
            )
        # The customer's set also lists the keys of its subscriptions: only this account's.
        key_ids = [r.key_id for r in await self.keys.records_of(account) if r.account == account]
        records = [schema.key_record(k, account) for k in key_ids]
        moved = int(
            await self._set_tier(keys=[schema.account_state(account), *records], args=[tier])
        )
        if moved == Result.MISSING:
            raise KeyNotFound(f"no account {account}")
        for key_id in key_ids:
            await self.keys.announce(key_id)
        log.info("account_tier_set", extra=fields(account=account, tier=tier, keys=moved))
        await self.audit.record(self.actor, "tier_set", f"account:{account}", tier=tier, keys=moved)
        return moved

    async def set_limits(self, account: str, limits: Mapping[str, object], clear: bool) -> None:
        """Give the account its own limits in place of its tier's (``limits`` holds tier field
        names), after clearing earlier ones if ``clear``. Validated as the tier table is, and
        written at once or not at all; every authz process applies them on the account's next
        check (leases of its keys are closed). Raises ValueError, or KeyNotFound."""
        problems = check_limits(f"account {account}", limits)
        if problems:
            raise InvalidInput("; ".join(problems))
        pairs: list[str] = []
        for key, value in limits.items():
            text = ",".join(value) if isinstance(value, list) else repr(value)
            pairs += [OVERRIDES[key], text]
        schema.owned_keys(account)  # raises ValueError for an id unfit for a key name
        name = schema.account_state(account)
        reply = await self._overrides(keys=[name], args=["1" if clear else "0", *pairs])
        if scripts.result(reply) is Result.MISSING:
            raise KeyNotFound(f"no account {account}")
        for key_id in await self.keys.owned(account):
            await self.keys.announce(key_id)
        log.info(
            "account_limits_set", extra=fields(account=account, clear=clear, limits=dict(limits))
        )
        await self.audit.record(
            self.actor, "limits_set", f"account:{account}", clear=clear, limits=dict(limits)
        )

    async def show(self, account: str, now: int | None = None) -> AccountView:
        """The account as of ``now`` (epoch s; default the wall clock's). Raises KeyNotFound
        if tollway knows nothing of ``account``."""
        plan = await self.keys.account_plan(account)
        # A customer's set also lists its subscriptions' keys: only this account's.
        keys = [k for k in await self.keys.records_of(account) if k.account == account]
        if not plan and not keys:
            raise KeyNotFound(f"no account {account}")
        state = {
            k: plan.pop(k, "") for k in ("tokens", "ts", "q_period", "q_used", "credits", *WINDOWS)
        }
        start = int(plan.get("period_start") or (keys[0].period_start if keys else 0))
        used = int(state["q_used"] or 0) if int(state["q_period"] or -1) >= start else 0
        at = int(time.time()) if now is None else now
        day = _in_window(state["d_start"], state["d_used"], at, DAY_S)
        hour = _in_window(state["h_start"], state["h_used"], at, HOUR_S)
        # Slots not lapsed (check.lua drops lapsed ones only when it next looks).
        flying = await self.redis.zcount(schema.in_flight(account), at * 1000, "+inf")
        plan = {k: v for k, v in plan.items() if not k.startswith(("t:", "s:"))}  # named buckets
        balance = int(state["credits"] or 0)
        return AccountView(account, plan, used, keys, day, hour, int(flying), balance)
