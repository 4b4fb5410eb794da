"""The dashboard's view of a customer's accounts, from what the kernel reads. No I/O."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from portal.chart import per_day, svg
from portal.pricing import pack_label, spends
from tollway.accounts import AccountView
from tollway.credits import LedgerEntry
from tollway.recharge import Recharge
from tollway.records import FINAL, KeyRecord, KeyState
from tollway.tiers import Tier, TierTable
from tollway.usage_report import Row


def day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d") if ts else "—"


def moment(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else "never"


@dataclass(frozen=True)
class KeyRow:
    key_id: str
    live: bool  # neither revoked nor expired: it can be rotated or revoked
    prefix: str
    status: str
    created: str
    last_used: str
    expires: str


@dataclass(frozen=True)
class CreditRow:
    when: str
    kind: str  # purchase, requests, ...
    credits: str  # signed: "+1,000", "-12"
    note: str


@dataclass(frozen=True)
class RechargeView:
    """What the dashboard says of an account's auto-recharge, and its form's values."""

    card: str  # "the card ending 4242", or "" when no card is on file
    enabled: bool
    below: int
    pack: str
    outcome: str  # the last attempt, said for the customer ("" for none)
    failed: bool  # that attempt was declined


def recharge_view(r: Recharge) -> RechargeView:
    outcome = ""
    if r.status == "charged":
        outcome = f"Last auto-recharge: charged on {moment(r.at)}; the credits follow."
    elif r.status == "declined":
        outcome = (
            f"The auto-recharge on {moment(r.at)} did not go through: {r.error} Nothing was "
            "charged or credited. Buy a pack to go on (and to save a card that works)."
        )
    card = f"the card ending {r.last4}" if r.card_on_file else ""
    return RechargeView(card, r.enabled, r.below, r.pack, outcome, r.status == "declined")


@dataclass(frozen=True)
class CreditsCard:
    """A prepaid account's balance, what its requests spend, the packs it can buy (name,
    label) and its latest ledger entries."""

    balance: int
    spends: str
    notice: str  # used up, or below zero (a refund after use): what that means; "" otherwise
    packs: tuple[tuple[str, str], ...]
    ledger: tuple[CreditRow, ...] = ()
    recharge: RechargeView | None = None  # the tier allows auto-recharge: its state


def credits_card(view: AccountView, tier: Tier | None) -> CreditsCard | None:
    """The credits part of a prepaid account's card (None for any other)."""
    if tier is None or not tier.prepaid:
        return None
    if view.credits < 0:
        notice = (
            f"Your balance is {view.credits:,} credits: below zero, because usage reported "
            "after a response, or a refund, took more than was left. Requests are refused "
            "(402) until you buy credits."
        )
    elif view.credits < tier.credits_per_request:
        notice = "Your credits are used up: requests are refused (402) until you buy more."
    else:
        notice = ""
    packs = tuple(
        (p.name, pack_label(tier, p.credits, p.price_amount))
        for p in sorted(tier.credit_packs, key=lambda p: p.price_amount)
    )
    return CreditsCard(view.credits, spends(tier), notice, packs)


def _entry(e: LedgerEntry) -> CreditRow:
    hour = e.kind.value in ("requests", "units", "returned")
    note = e.reason if not hour else f"in the hour from {moment(e.at)}"
    return CreditRow(moment(e.at), e.kind.value, f"{e.credits:+,}", note)


def with_ledger(
    c: AccountCard, entries: list[LedgerEntry], recharge: Recharge | None = None
) -> AccountCard:
    """``c`` with its prepaid account's latest ledger entries and, if its tier allows it,
    its auto-recharge."""
    if c.credits is None:
        return c
    rows = tuple(_entry(e) for e in entries)
    shown = recharge_view(recharge) if recharge is not None else None
    return replace(c, credits=replace(c.credits, ledger=rows, recharge=shown))


@dataclass(frozen=True)
class AccountCard:
    account: str
    tier: str
    status: str
    notice: str  # past_due: when access ends; "" otherwise
    ending: str  # a cancellation pending (at the period's end): when access ends; "" otherwise
    used: int
    quota: int  # 0: unlimited
    percent: int  # of the quota used, 0..100 (0 when unlimited)
    limits: str  # "20 requests/s, bursts of 40"
    # "Today (UTC): 3 of 1,000 requests. This hour: 2 of 100. In flight now: 1 of 2." ("" for
    # no cap)
    caps: str
    resets: str  # the period's end
    keys: list[KeyRow]
    period: tuple[int, int]  # this billing period, epoch s
    meter: str  # the tier's meter_event
    usage_meter: str  # the tier's usage_meter, "" for none
    charts: tuple[str, ...] = ()  # SVG, filled in by with_charts
    credits: CreditsCard | None = None  # a prepaid account's; its ledger by with_ledger


def _row(k: KeyRecord, state: KeyState) -> KeyRow:
    return KeyRow(
        k.key_id,
        state not in FINAL,
        k.prefix or k.key_id,
        state.value,
        day(k.created),
        moment(k.last_used),
        moment(k.expires_at) if k.expires_at else "—",
    )


def card(view: AccountView, table: TierTable) -> AccountCard:
    plan = view.plan
    tier_name = view.tier
    tier = table.get(tier_name)
    rate = float(view.in_force("requests_per_second", tier) or 0)
    burst, quota, per_day, per_hour, at_once = (
        int(view.in_force(f, tier) or 0)
        for f in ("burst", "monthly_quota", "per_day", "per_hour", "max_concurrent")
    )
    caps = " ".join(
        f"{label}: {used:,} of {cap:,} requests."
        for label, used, cap in (
            ("Today (UTC)", view.day_used, per_day),
            ("This hour", view.hour_used, per_hour),
            ("In flight now", view.in_flight, at_once),
        )
        if cap
    )
    status = plan.get("status") or (view.keys[0].status.value if view.keys else "")
    if status == "revoked" and plan.get("subscription"):
        status = "canceled"  # what the customer did: the subscription ended, its keys with it
    elif view.hold:
        status = "suspended"  # by the operator: every key of the account is refused
    grace = max((k.grace_until for k in view.keys), default=0)
    notice = (
        f"Payment overdue: access ends {moment(grace)}." if status == "past_due" and grace else ""
    )
    cancel_at = int(plan.get("cancel_at") or 0)
    ending = (
        f"Canceled: access ends {moment(cancel_at)}. Renew under Manage billing to keep it."
        if cancel_at and status in ("active", "past_due")
        else ""
    )
    start, end = view.period(int(time.time()))
    percent = min(100, round(100 * view.quota_used / quota)) if quota else 0
    states = view.states(int(time.time()))
    return AccountCard(
        view.account,
        tier_name,
        status,
        notice,
        ending,
        view.quota_used,
        quota,
        percent,
        f"{rate:g} requests/s, bursts of {burst:,}",
        caps,
        day(end),
        [_row(k, states[k.key_id]) for k in view.keys],
        (start, end),
        table.meter_event(tier_name),
        tier.usage_meter if tier else "",
        credits=credits_card(view, tier),
    )


def with_charts(c: AccountCard, rows: dict[str, Row]) -> AccountCard:
    """``c`` with its period's requests per day (and reported amounts, if its tier has a
    usage meter), from the customer's usage rows."""
    start, end = c.period
    charts = [svg(per_day(rows, c.meter, start, end), "Requests per day")]
    if c.usage_meter:
        charts.append(svg(per_day(rows, c.usage_meter, start, end), f"{c.usage_meter} per day"))
    return replace(c, charts=tuple(charts))
