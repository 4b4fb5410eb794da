"""The tier table: what each plan may do, read from TOML and validated as a whole.

Each tier field is declared once, on ``Tier``: its type and default, how a TOML value is read
and checked (``Reader``), and how the README's example shows it (``tier_example()``). The
parser, the validator, the defaults and the documented example all come from that one
declaration; rules between fields are ``RULES``.

``load_tiers(path)`` returns a ``TierTable`` or raises ``TierError`` whose ``problems`` each name
the file, the tier and the field, e.g.::

    tiers.toml: tier "pro": field "burst": must be an integer >= 1, got 0

A table is either entirely valid or rejected: callers never see a half-read table.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from tollway.errors import InvalidInput
from tollway.tier_readers import (
    CURRENCY,
    DEFAULT_BILL_STATUSES,
    FEATURE_NAME,
    METER_EVENT,
    OUTCOME,
    PRICE_ID,
    TIER_NAME,
    Bad,
    Bucket,
    CreditPack,
    Reader,
    at_least,
    buckets,
    choice,
    credit_packs,
    decimal,
    flag,
    positive_number,
    string,
    strings,
)
from tollway.tier_rules import RULES

DEFAULT_METER_EVENT = "api_requests"


class OverQuota(StrEnum):
    BLOCK = "block"  # 429 quota_exceeded past the quota
    BILL = "bill"  # keep serving; metering bills the overage


class Report(StrEnum):
    ALL = "all"  # report every request; the Stripe price (graduated tiers) prices the overage
    OVERAGE = "overage"  # report only requests past monthly_quota in the billing period


class LimiterKind(StrEnum):
    EXACT = "exact"  # every check runs check.lua in Redis: one round trip per request
    LEASE = "lease"  # each authz process spends small batches of tokens locally (authz/leases.py)


class OnStoreError(StrEnum):
    DENY = "deny"  # 503 store_unavailable: never serve what we cannot count or check
    ALLOW = "allow"  # serve, mark the request, and write usage back when Redis returns


def _spec(
    read: Reader, example: str, doc: str, default: Any = MISSING, commented: bool = False
) -> Any:
    """A tier field: ``default`` (none: the field is required), ``read`` for its TOML value,
    and the ``example`` value and ``doc`` the README's tier example shows (``commented``: as a
    comment, for a field the rest of the example does not allow)."""
    meta = {"read": read, "example": example, "doc": doc, "commented": commented}
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Tier:
    name: str
    requests_per_second: float = _spec(positive_number, "20.0", "bucket refill rate (> 0)")
    burst: int = _spec(at_least(1), "40", "bucket size (>= 1)")
    monthly_quota: int = _spec(
        at_least(0, " (0 = unlimited)"), "100000", "requests per billing period; 0 = unlimited"
    )
    over_quota: OverQuota = _spec(
        choice(OverQuota), '"bill"', '"block" (429 quota_exceeded) or "bill" (keep serving)'
    )
    # Caps in fixed UTC windows beside the quota (429 daily_limit_exceeded or
    # hourly_limit_exceeded until the window ends), whatever over_quota says.
    per_day: int = _spec(at_least(0, " (0 = none)"), "20000", "requests per UTC day; 0 = no cap", 0)
    per_hour: int = _spec(
        at_least(0, " (0 = none)"), "2000", "requests per UTC hour; 0 = no cap", 0
    )
    # Named buckets a route may take from instead of the default one (tollway_bucket); a
    # route naming a bucket the tier has not takes from the default one.
    buckets: tuple[Bucket, ...] = _spec(
        buckets,
        "{ reports = { requests_per_second = 5.0, burst = 10 } }",
        "a route's own bucket (tollway_bucket)",
        (),
    )
    # Requests of one account in flight at once (429 concurrency_exceeded past it): a slot is
    # taken at the check and freed by Envoy's access log, or after TOLLWAY_AUTHZ_SLOT_S.
    max_concurrent: int = _spec(
        at_least(0, " (0 = none)"), "4", "requests in flight at once; 0 = no cap", 0
    )
    # Prepaid (README "Prepaid credits"): every request spends credits_per_request times the
    # route's cost from the account's balance, in check.lua (402 credits_exhausted when it
    # cannot cover it), and every unit the upstream reports credits_per_unit, after the
    # response; customers buy credit_packs through Checkout. Nothing is sent to a meter.
    prepaid: bool = _spec(flag, "false", "requests spend the account's prepaid credits", False)
    credits_per_request: int = _spec(
        at_least(1), "1", "prepaid: credits a request spends, times its cost", 1, commented=True
    )
    credits_per_unit: int = _spec(
        at_least(0),
        "0",
        "prepaid: credits per unit the upstream reports (x-tollway-usage)",
        0,
        commented=True,
    )
    low_credits: int = _spec(
        at_least(0),
        "100",
        "prepaid: alert the customer below this balance (0: when used up only)",
        0,
        commented=True,
    )
    credits_expire_days: int = _spec(
        at_least(0),
        "365",
        "prepaid: credits expire this many days after they came in (0: never)",
        0,
        commented=True,
    )
    # Customers may turn auto-recharge on: their card, saved at their first purchase, is
    # charged off-session for the pack they chose when the balance falls below their mark.
    auto_recharge: bool = _spec(
        flag, "false", "prepaid: customers may turn auto-recharge on", False, commented=True
    )
    credit_packs: tuple[CreditPack, ...] = _spec(
        credit_packs,
        "{ starter = { credits = 1000, price_amount = 1000 } }",
        "prepaid: what a customer can buy (one-time Prices)",
        (),
        commented=True,
    )
    on_store_error: OnStoreError = _spec(
        choice(OnStoreError),
        '"deny"',
        '"deny" (503) or "allow" while Redis is unreachable',
        OnStoreError.DENY,
    )
    report: Report = _spec(
        choice(Report),
        '"all"',
        '"all" usage, or only the "overage" past monthly_quota',
        Report.ALL,
    )
    limiter: LimiterKind = _spec(
        choice(LimiterKind),
        '"exact"',
        '"exact": Redis decides every request; or "lease"',
        LimiterKind.EXACT,
    )
    # lease mode: tokens one authz process takes from the bucket at once (0 in exact mode)
    lease_tokens: int = _spec(
        at_least(1), "4", "lease mode: tokens per lease (default burst // 10)", 0, commented=True
    )
    dry_run: bool = _spec(flag, "false", "decide, log and count, but always allow", False)
    # the Stripe Billing Meter event_name usage is sent as
    meter_event: str = _spec(
        string(METER_EVENT),
        f'"{DEFAULT_METER_EVENT}"',
        "the Stripe Billing Meter usage is reported to",
        DEFAULT_METER_EVENT,
    )
    description: str = _spec(string(), '"Production use."', "for the portal's pricing page", "")
    # The portal lets anyone sign up for this tier with an email address alone (no Stripe):
    # a tier with no price. The pricing page lists paid tiers and these.
    free_signup: bool = _spec(
        flag, "false", "anyone signs up with an email alone (no price)", False
    )
    features: frozenset[str] = _spec(
        strings(FEATURE_NAME, frozenset),
        '["reports"]',
        "gates a route may require (tollway_feature)",
        frozenset(),
    )
    stripe_prices: tuple[str, ...] = _spec(
        strings(PRICE_ID, tuple),
        '["tollway_pro_monthly"]',
        "maps a Stripe subscription to this tier",
        (),
    )
    # What `tollway stripe sync` creates in Stripe for a paid tier (price_amount set): a Product,
    # a recurring flat Price with lookup key stripe_prices[0], and, with overage_unit_amount, a
    # metered Price on the tier's Billing Meter, graduated: monthly_quota requests at 0, then
    # overage_unit_amount each. Amounts are in the currency's minor unit (cents).
    price_amount: int | None = _spec(
        at_least(0, " (minor units)"),
        "2900",
        "`tollway stripe sync`: the flat fee per interval",
        None,
    )
    currency: str = _spec(
        string(CURRENCY, "must be a 3-letter ISO code in lower case, got {v!r}"),
        '"usd"',
        "the prices' currency",
        "usd",
    )
    interval: str = _spec(
        string(re.compile(r"^(month|year)$"), 'must be "month" or "year", got {v!r}'),
        '"month"',
        '"month" or "year"',
        "month",
    )
    # a decimal string, e.g. "0.05" (cents per request)
    overage_unit_amount: str | None = _spec(
        decimal, '"0.05"', "cents per request past monthly_quota (a metered Price)", None
    )
    # Billing what was served (Envoy's access log, metering/receiver.py): the final outcomes
    # billed (OUTCOME); whether a request not billed gives its quota back; the Billing Meter
    # the amounts the upstream reports (x-tollway-usage) go to, "" for none; and the price
    # per unit of that meter, a decimal string in minor units, for `tollway stripe sync`.
    bill_statuses: frozenset[str] = _spec(
        strings(OUTCOME, frozenset),
        '["2xx", "3xx", "4xx", "aborted"]',
        "final outcomes billed (README: What is billed)",
        frozenset(DEFAULT_BILL_STATUSES),
    )
    refund_quota: bool = _spec(flag, "true", "a request not billed gives its quota back", True)
    usage_meter: str = _spec(
        string(METER_EVENT, empty=True),
        '"tokens"',
        "the meter for amounts the upstream reports (x-tollway-usage)",
        "",
    )
    usage_unit_amount: str | None = _spec(
        decimal, '"0.002"', "cents per unit of usage_meter (a metered Price)", None
    )

    def bucket(self, name: str | None) -> Bucket | None:
        """The named bucket a route takes from, or None: the default one."""
        if name is not None:
            for b in self.buckets:
                if b.name == name:
                    return b
        return None

    def pack(self, name: str) -> CreditPack | None:
        """The credit pack called ``name``, or None."""
        return next((p for p in self.credit_packs if p.name == name), None)

    def bills(self, outcome: str) -> bool:
        """Is a request that ended in ``outcome`` (a status code, or reset, timeout, aborted)
        billed? A code is billed if the code itself or its class ("4xx") is listed."""
        s = self.bill_statuses
        return outcome in s or (outcome[:1].isdigit() and f"{outcome[0]}xx" in s)


# The fields a tier table sets (all but the name), in declaration order.
TIER_FIELDS: tuple[Field[Any], ...] = tuple(f for f in fields(Tier) if f.name != "name")
FIELD_NAMES = frozenset(f.name for f in TIER_FIELDS)
# What an operator may override per account (tollway accounts set-limits).
OVERRIDABLE = (
    "requests_per_second",
    "burst",
    "monthly_quota",
    "features",
    "per_day",
    "per_hour",
    "max_concurrent",
)


@dataclass(frozen=True)
class TierTable:
    source: str
    tiers: Mapping[str, Tier]

    def get(self, name: str) -> Tier | None:
        return self.tiers.get(name)

    def meter_event(self, name: str) -> str:
        """The Billing Meter requests of tier ``name`` go to (the default for a tier the table
        no longer has)."""
        tier = self.tiers.get(name)
        return tier.meter_event if tier is not None else DEFAULT_METER_EVENT

    def __iter__(self) -> Iterator[Tier]:
        return iter(self.tiers.values())

    def __len__(self) -> int:
        return len(self.tiers)


class TierError(InvalidInput):
    """The tier table is invalid; ``problems`` lists every finding, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def fail(self, tier: str | None, key: str | None, message: str) -> None:
        where = [self.source]
        if tier is not None:
            where.append(f'tier "{tier}"')
        if key is not None:
            where.append(f'field "{key}"')
        self.problems.append(": ".join([*where, message]))

    def read(
        self, tier: str | None, raw: Mapping[str, object], only: Iterator[Field[Any]]
    ) -> dict[str, Any]:
        """Each field in ``only`` that ``raw`` sets, read; a problem for each that fails."""
        values: dict[str, Any] = {}
        for f in only:
            if f.name not in raw:
                continue
            try:
                values[f.name] = f.metadata["read"](raw[f.name])
            except Bad as exc:
                self.fail(tier, f.name, str(exc))
        return values

    def tier(self, name: str, raw: object) -> Tier | None:
        if not TIER_NAME.match(name):
            self.fail(name, None, f"tier names must match {TIER_NAME.pattern}")
            return None
        if not isinstance(raw, dict):
            self.fail(name, None, f"must be a table, got {type(raw).__name__}")
            return None
        before = len(self.problems)
        for key in sorted(set(raw) - FIELD_NAMES):
            self.fail(name, key, f"unknown field (known: {', '.join(sorted(FIELD_NAMES))})")
        for f in TIER_FIELDS:
            if f.default is MISSING and f.name not in raw:
                self.fail(name, f.name, "is required")
        values: dict[str, Any] = {f.name: f.default for f in TIER_FIELDS} | self.read(
            name, raw, iter(TIER_FIELDS)
        )
        if len(self.problems) > before:
            return None
        for rule in RULES:
            problem = rule(values, raw)
            if problem is not None:
                self.fail(name, *problem)
        if len(self.problems) > before:
            return None
        if values["limiter"] is not LimiterKind.LEASE:
            values["lease_tokens"] = 0
        elif "lease_tokens" not in raw:
            values["lease_tokens"] = max(1, values["burst"] // 10)
        return Tier(name=name, **values)


def check_limits(source: str, limits: Mapping[str, object]) -> list[str]:
    """Problems with an account's overrides (OVERRIDABLE), in the tier table's words: ``account sub_1: field "burst": must be ...``."""
    v = _Validator(source)
    for key in sorted(set(limits) - set(OVERRIDABLE)):
        v.fail(None, key, "cannot be overridden per account")
    v.read(None, limits, (f for f in TIER_FIELDS if f.name in OVERRIDABLE))
    return v.problems


def tier_example() -> str:
    """The README's tier example: every field with an example value and what it does."""
    lines = ["[tiers.pro]"]
    for f in TIER_FIELDS:
        setting = f"{'# ' if f.metadata['commented'] else ''}{f.name} = {f.metadata['example']}"
        lines.append(f"{setting:<35} # {f.metadata['doc']}")
    return "\n".join(lines)


def parse_tiers(text: str, source: str) -> TierTable:
    """Validate TOML ``text`` (read from ``source``, used in messages) into a ``TierTable``."""
    check = _Validator(source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TierError([f"{source}: not valid TOML: {exc}"]) from None
    for key in sorted(set(doc) - {"tiers"}):
        check.fail(None, key, "unknown top-level key (tiers go in [tiers.NAME] tables)")
    raw_tiers = doc.get("tiers")
    if not isinstance(raw_tiers, dict) or not raw_tiers:
        check.fail(None, "tiers", "at least one [tiers.NAME] table is required")
        raise TierError(check.problems)

    tiers: dict[str, Tier] = {}
    for name, raw in raw_tiers.items():
        tier = check.tier(name, raw)
        if tier is not None:
            tiers[name] = tier

    owner: dict[str, str] = {}
    for tier in tiers.values():
        for price in tier.stripe_prices:
            if price in owner:
                check.fail(
                    tier.name,
                    "stripe_prices",
                    f'price "{price}" is already used by tier "{owner[price]}"',
                )
            owner[price] = tier.name
    if check.problems:
        raise TierError(check.problems)
    return TierTable(source=source, tiers=tiers)


def load_tiers(path: Path | str) -> TierTable:
    """Read and validate the tier table at ``path``. Raises ``TierError``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TierError([f"{p}: cannot read: {exc}"]) from None
    return parse_tiers(text, str(p))
