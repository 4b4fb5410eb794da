"""Prepaid credits: an account's balance and its ledger (README "Prepaid credits").

The balance is the ``credits`` field of the account's state hash, beside its bucket and quota,
so check.lua reads and spends it in the same call that decides the request. Every movement is
on the ledger, in the account's slot:

- requests' credits, by UTC hour (``r:<hour>``), written by check.lua in the same call as the
  balance; credits of requests not billed given back (``f:<hour>``) and credits of the units
  the upstream reported (``u:<hour>``), by the access-log receiver in one script each;
- every other movement, one stream entry each (``credit_move.lua``): a purchase, a refund of
  one, an operator's grant or adjustment; each under a reference that moves the balance once
  however often it is applied (a webhook delivered twice, an API call retried).

So the ledger sums to the balance at every moment (``Totals``): the property test in
tests/integration/test_credits.py holds it under any order of these, at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tollway import schema, scripts
from tollway.audit import AuditLog
from tollway.errors import InvalidInput, NotFound
from tollway.key_store import text
from tollway.scripts import Result
from tollway.tier_readers import MAX_CREDITS, CreditPack

# A credit purchase's metadata, on its Checkout Session and its PaymentIntent (webhook/app.py)
ACCOUNT_META, CREDITS_META, PACK_META = "tollway_account", "tollway_credits", "tollway_pack"
LEDGER_MAX = 1000  # entries a ledger read returns at most
REASON_MAX = 200  # characters of an adjustment's reason


class Movement(StrEnum):
    """What moved credits: the ledger entry's kind, the same word in the API and the portal."""

    PURCHASE = "purchase"  # a pack bought through Checkout (+)
    REFUND = "refund"  # a payment refunded in Stripe: its credits taken back (-)
    GRANT = "grant"  # an operator's gift (+)
    ADJUSTMENT = "adjustment"  # an operator's correction (+ or -)
    REQUESTS = "requests"  # requests let through in the hour (-)
    UNITS = "units"  # units the upstream reported in the hour (-)
    RETURNED = "returned"  # requests not billed in the hour, their credits given back (+)
    EXPIRY = "expiry"  # credits past the tier's credits_expire_days, oldest first (-)


# The hour rows' field prefixes (check.lua, apply_log_entry.lua) and their sign.
_HOURS = {"r": (Movement.REQUESTS, -1), "u": (Movement.UNITS, -1), "f": (Movement.RETURNED, 1)}


@dataclass(frozen=True)
class LedgerEntry:
    at: int  # epoch s: when it was applied (an hour row: the hour's start)
    kind: Movement
    credits: int  # signed: what it did to the balance
    ref: str = ""  # the Checkout session, payment or Idempotency-Key it was applied under
    reason: str = ""
    actor: str = ""
    balance: int | None = None  # the balance right after it (None for an hour's row)

    def public(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "kind": self.kind.value,
            "credits": self.credits,
            "ref": self.ref,
            "reason": self.reason,
            "actor": self.actor,
            "balance": self.balance,
        }


@dataclass(frozen=True)
class Moved:
    applied: bool  # False: this reference had moved as much already (a repeat)
    balance: int
    credits: int  # what this call moved


@dataclass(frozen=True)
class Totals:
    balance: int
    ledger: int  # the sum of every ledger entry: equal to the balance, always

    @property
    def consistent(self) -> bool:
        return self.balance == self.ledger


@dataclass(frozen=True)
class Statement:
    """An account's balance, its ledger's sum and its newest ledger entries."""

    account: str
    totals: Totals
    entries: list[LedgerEntry]

    def public(self) -> dict[str, Any]:
        """What `tollway credits show --json` prints and the API answers."""
        return {
            "account": self.account,
            "balance": self.totals.balance,
            "ledger_sum": self.totals.ledger,
            "ledger": [e.public() for e in self.entries],
        }


def pack_lookup_key(tier: str, pack: CreditPack) -> str:
    """The lookup key of a credit pack's one-time Price (`tollway stripe sync` makes it, and
    Checkout finds it by it)."""
    return f"tollway_{tier}_{pack.name}"


def pack_metadata(account: str, pack: CreditPack) -> dict[str, str]:
    """A pack's payment's metadata (its Checkout Session's and PaymentIntent's, or an
    auto-recharge's PaymentIntent's): what the webhook credits it by."""
    return {ACCOUNT_META: account, CREDITS_META: str(pack.credits), PACK_META: pack.name}


def purchase_ref(payment_intent: str, session: str = "") -> str:
    """The reference a paid pack is credited under: its payment (what refunds and
    `tollway reconcile` name), or its Checkout Session when the event names no payment."""
    return f"payment:{payment_intent}" if payment_intent else f"checkout:{session}"


def refund_ref(payment_intent: str) -> str:
    """The reference the refunds of one payment are taken back under, in all."""
    return f"refund:{payment_intent}"


def check_amount(credits: int, allow_negative: bool) -> None:
    """Raises InvalidInput unless ``credits`` is a movement an operator may make."""
    low = -MAX_CREDITS if allow_negative else 1
    if not (low <= credits <= MAX_CREDITS) or credits == 0:
        raise InvalidInput(
            f"credits must be a non-zero integer from {low} to {MAX_CREDITS}, got {credits}",
            field="credits",
        )


def check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason or len(reason) > REASON_MAX or not reason.isprintable():
        raise InvalidInput(
            f"give a reason: printable text of 1 to {REASON_MAX} characters", field="reason"
        )
    return reason


class Credits:
    """Reads and moves prepaid accounts' credits. Operators' moves are audited here, once."""

    def __init__(
        self, redis: Any, audit: AuditLog | None = None, now: Callable[[], float] = time.time
    ) -> None:
        self.redis = redis
        self.audit = audit
        self.now = now
        self._move = scripts.register(redis, "credit_move")
        self._expire = scripts.register(redis, "credit_expire")

    async def balance(self, account: str) -> int:
        return int(await self.redis.hget(schema.account_state(account), "credits") or 0)

    async def move(
        self, account: str, ref: str, target: int, kind: Movement, reason: str, actor: str
    ) -> Moved:
        """Move the account's credits under ``ref`` so that it has moved ``target`` in all
        (see credit_move.lua): once however often it is called."""
        reply = await self._move(
            keys=[
                schema.account_state(account),
                schema.credit_log(account),
                schema.credit_refs(account),
            ],
            args=[ref, str(target), kind.value, reason, actor, str(int(self.now()))],
        )
        applied = scripts.result(reply) is Result.DONE
        return Moved(applied, int(reply[1]), int(reply[2]))

    async def adjust(
        self, account: str, credits: int, reason: str, actor: str, ref: str, kind: Movement
    ) -> Moved:
        """An operator's grant (``kind`` GRANT: > 0) or adjustment (either sign), with a
        reason, once per ``ref`` (an Idempotency-Key, or one the caller makes up), audited.
        Raises InvalidInput (the amount, the reason) or NotFound (no such account)."""
        check_amount(credits, allow_negative=kind is Movement.ADJUSTMENT)
        reason = check_reason(reason)
        if not await self.redis.hexists(schema.account_state(account), "tier"):
            raise NotFound(f"no account {account}")
        moved = await self.move(account, ref, credits, kind, reason, actor)
        if moved.applied and self.audit is not None:
            await self.audit.record(
                actor,
                f"credits_{kind.value}",
                f"account:{account}",
                credits=moved.credits,
                reason=reason,
                balance=moved.balance,
            )
        return moved

    async def expire(self, account: str, life_s: int, actor: str) -> Moved:
        """Expire what is left of the account's credits older than ``life_s`` (the oldest are
        used first), once: credit_expire.lua. Safe to run as often as wanted."""
        reply = await self._expire(
            keys=[
                schema.account_state(account),
                schema.credit_log(account),
                schema.credit_refs(account),
                schema.credit_hours(account),
            ],
            args=[str(int(self.now())), str(life_s), actor],
        )
        return Moved(scripts.result(reply) is Result.DONE, int(reply[1]), -int(reply[2]))

    async def last_top_up(self, account: str) -> str:
        """The ledger entry of the account's last top-up (credits in: a purchase, a grant, an
        upward adjustment), "0" if none among its newest 100: a crossing below a threshold
        belongs to it (a balance alert, an auto-recharge: once per crossing)."""
        for entry_id, row in await self.redis.xrevrange(schema.credit_log(account), count=100):
            if int(text(row.get("credits", row.get(b"credits", "0")))) > 0:
                return text(entry_id)
        return "0"

    async def logged(self, account: str) -> list[LedgerEntry]:
        """The account's ledger entries other than the hours' usage, oldest first: every one
        (purchases, refunds, operators' moves and expiries are few)."""
        return [_logged(i, row) for i, row in await self.redis.xrange(schema.credit_log(account))]

    async def ledger(self, account: str, limit: int = 100) -> list[LedgerEntry]:
        """The account's ledger, newest first: at most ``limit`` (<= LEDGER_MAX) entries."""
        limit = max(1, min(limit, LEDGER_MAX))
        logged = await self.redis.xrevrange(schema.credit_log(account), count=limit)
        entries = [_logged(entry_id, row) for entry_id, row in logged]
        entries += _hour_rows(await self.redis.hgetall(schema.credit_hours(account)))
        entries.sort(key=lambda e: e.at, reverse=True)
        return entries[:limit]

    async def statement(self, account: str, limit: int) -> Statement:
        return Statement(account, await self.totals(account), await self.ledger(account, limit))

    async def totals(self, account: str) -> Totals:
        """The balance and the sum of the whole ledger, read at one moment (one pipeline in
        the account's slot, MULTI: no script can run between its reads)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(schema.account_state(account), "credits")
            pipe.xrange(schema.credit_log(account))
            pipe.hgetall(schema.credit_hours(account))
            raw_balance, logged, hours = await pipe.execute()
        total = sum(_logged(i, row).credits for i, row in logged)
        total += sum(e.credits for e in _hour_rows(hours))
        return Totals(int(raw_balance or 0), total)


def _logged(entry_id: Any, row: dict[Any, Any]) -> LedgerEntry:
    f = {text(k): text(v) for k, v in row.items()}
    return LedgerEntry(
        int(f.get("at") or int(text(entry_id).split("-")[0]) // 1000),
        Movement(f["kind"]),
        int(f["credits"]),
        f.get("ref", ""),
        f.get("reason", ""),
        f.get("actor", ""),
        int(f["balance"]) if f.get("balance") else None,
    )


def _hour_rows(hours: dict[Any, Any]) -> list[LedgerEntry]:
    rows = []
    for k, v in hours.items():
        prefix, _, hour = text(k).partition(":")
        if prefix in _HOURS and hour.isdigit() and int(v):
            kind, sign = _HOURS[prefix]
            rows.append(LedgerEntry(int(hour), kind, sign * int(v)))
    return rows
