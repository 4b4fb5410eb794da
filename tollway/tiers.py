"""The tier table: what each plan may do, read from TOML and validated as a whole.

``load_tiers(path)`` returns a ``TierTable`` or raises ``TierError`` whose ``problems`` each name
the file, the tier and the field, e.g.::

    tiers.toml: tier "pro": field "burst": must be an integer >= 1, got 0

A table is either entirely valid or rejected: callers never see a half-read table.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

TIER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
FEATURE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
PRICE_ID = re.compile(r"^\S{1,200}$")
METER_EVENT = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")  # Stripe's event_name: at most 100
# A request's final outcome, as metering's access-log receiver names it (metering/outcomes.py):
# a status class or code, or what happened instead of an answer from the upstream.
OUTCOME = re.compile(r"^([1-5]xx|[1-5][0-9][0-9]|reset|timeout|aborted)$")
# Billed by default: whatever the upstream answered below 500, and a client that hung up before
# the answer (the upstream may have done the work; not billing it would make it free).
DEFAULT_BILL_STATUSES = ("2xx", "3xx", "4xx", "aborted")


E = TypeVar("E", bound=StrEnum)


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


@dataclass(frozen=True)
class Tier:
    name: str
    requests_per_second: float
    burst: int
    monthly_quota: int  # 0 means unlimited
    over_quota: OverQuota
    features: frozenset[str]
    stripe_prices: tuple[str, ...]
    on_store_error: OnStoreError
    dry_run: bool
    meter_event: str = "api_requests"  # the Stripe Billing Meter event_name usage is sent as
    report: Report = Report.ALL
    limiter: LimiterKind = LimiterKind.EXACT
    lease_tokens: int = 0  # lease mode: tokens one authz process takes from the bucket at once
    # What `tollway stripe sync` creates in Stripe for a paid tier (price_amount set): a Product,
    # a recurring flat Price with lookup key stripe_prices[0], and, with overage_unit_amount, a
    # metered Price on the tier's Billing Meter, graduated: monthly_quota requests at 0, then
    # overage_unit_amount each. Amounts are in the currency's minor unit (cents).
    price_amount: int | None = None
    currency: str = "usd"
    interval: str = "month"
    overage_unit_amount: str | None = None  # a decimal string, e.g. "0.05" (cents per request)
    # Billing what was served (Envoy's access log, metering/receiver.py): the final outcomes
    # billed (OUTCOME); whether a request not billed gives its quota back; the Billing Meter
    # the amounts the upstream reports (x-tollway-usage) go to, "" for none; and the price
    # per unit of that meter, a decimal string in minor units, for `tollway stripe sync`.
    bill_statuses: frozenset[str] = frozenset(DEFAULT_BILL_STATUSES)
    refund_quota: bool = True
    usage_meter: str = ""
    usage_unit_amount: str | None = None
    description: str = ""  # for people: the portal's pricing page shows it
    # The portal lets anyone sign up for this tier with an email address alone (no Stripe):
    # a tier with no price. The pricing page lists paid tiers and these.
    free_signup: bool = False

    def bills(self, outcome: str) -> bool:
        """Is a request that ended in ``outcome`` (a status code, or reset, timeout, aborted)
        billed? A code is billed if the code itself or its class ("4xx") is listed."""
        s = self.bill_statuses
        return outcome in s or (outcome[:1].isdigit() and f"{outcome[0]}xx" in s)


@dataclass(frozen=True)
class TierTable:
    source: str
    tiers: Mapping[str, Tier]

    def get(self, name: str) -> Tier | None:
        return self.tiers.get(name)

    def __iter__(self) -> Iterator[Tier]:
        return iter(self.tiers.values())

    def __len__(self) -> int:
        return len(self.tiers)


class TierError(ValueError):
    """The tier table is invalid; ``problems`` lists every finding, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# field -> (required, default). Types are checked in _Validator.
_FIELDS: dict[str, tuple[bool, Any]] = {
    "requests_per_second": (True, None),
    "burst": (True, None),
    "monthly_quota": (True, None),
    "over_quota": (True, None),
    "features": (False, []),
    "stripe_prices": (False, []),
    "on_store_error": (False, "deny"),
    "dry_run": (False, False),
    "description": (False, ""),
    "free_signup": (False, False),
    "meter_event": (False, "api_requests"),
    "report": (False, "all"),
    "limiter": (False, "exact"),
    "lease_tokens": (False, None),  # lease mode: default burst // 10, at least 1
    "price_amount": (False, None),
    "currency": (False, "usd"),
    "interval": (False, "month"),
    "overage_unit_amount": (False, None),
    "bill_statuses": (False, list(DEFAULT_BILL_STATUSES)),
    "refund_quota": (False, True),
    "usage_meter": (False, ""),
    "usage_unit_amount": (False, None),
}
CURRENCY = re.compile(r"^[a-z]{3}$")
DECIMAL = re.compile(r"^\d{1,12}(\.\d{1,12})?$")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def fail(self, tier: str | None, field: str | None, message: str) -> None:
        where = [self.source]
        if tier is not None:
            where.append(f'tier "{tier}"')
        if field is not None:
            where.append(f'field "{field}"')
        self.problems.append(": ".join([*where, message]))

    def string_list(
        self, tier: str | None, key: str, value: object, pattern: re.Pattern[str]
    ) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(tier, key, f"must be a list of strings, got {value!r}")
            return []
        bad = [v for v in value if not pattern.match(v)]
        if bad:
            self.fail(tier, key, f"invalid entries {bad!r} (allowed: {pattern.pattern})")
            return []
        return list(value)

    def limits(self, name: str | None, raw: Mapping[str, object]) -> None:
        """The checks of requests_per_second, burst and monthly_quota, where present (a tier's,
        or an account's overrides)."""
        rps = raw.get("requests_per_second")
        ok_rps = (_is_int(rps) or isinstance(rps, float)) and math.isfinite(rps) and rps > 0  # type: ignore[arg-type, operator]
        if "requests_per_second" in raw and not ok_rps:
            self.fail(name, "requests_per_second", f"must be a number > 0, got {rps!r}")
        burst = raw.get("burst")
        if "burst" in raw and not (_is_int(burst) and burst >= 1):  # type: ignore[operator]
            self.fail(name, "burst", f"must be an integer >= 1, got {burst!r}")
        quota = raw.get("monthly_quota")
        if "monthly_quota" in raw and not (_is_int(quota) and quota >= 0):  # type: ignore[operator]
            self.fail(
                name, "monthly_quota", f"must be an integer >= 0 (0 = unlimited), got {quota!r}"
            )

    def tier(self, name: str, raw: object) -> Tier | None:
        if not TIER_NAME.match(name):
            self.fail(name, None, f"tier names must match {TIER_NAME.pattern}")
            return None
        if not isinstance(raw, dict):
            self.fail(name, None, f"must be a table, got {type(raw).__name__}")
            return None
        before = len(self.problems)
        for key in sorted(set(raw) - set(_FIELDS)):
            self.fail(name, key, f"unknown field (known: {', '.join(sorted(_FIELDS))})")
        for key, (required, _) in _FIELDS.items():
            if required and key not in raw:
                self.fail(name, key, "is required")
        v = {k: raw.get(k, default) for k, (_, default) in _FIELDS.items()}

        self.limits(name, raw)
        rps, quota = v["requests_per_second"], v["monthly_quota"]
        over = self.choice(name, "over_quota", v["over_quota"], OverQuota, "over_quota" in raw)
        store = self.choice(name, "on_store_error", v["on_store_error"], OnStoreError, True)
        report = self.choice(name, "report", v["report"], Report, True)
        if report is Report.OVERAGE and _is_int(quota) and quota == 0:
            self.fail(name, "report", '"overage" needs a monthly_quota > 0 to report usage past')
        limiter = self.choice(name, "limiter", v["limiter"], LimiterKind, True)
        lease = v["lease_tokens"]
        if lease is not None:
            if limiter is not LimiterKind.LEASE:
                self.fail(name, "lease_tokens", 'only applies with limiter = "lease"')
            elif not (_is_int(lease) and lease >= 1):
                self.fail(name, "lease_tokens", f"must be an integer >= 1, got {lease!r}")
            elif _is_int(v["burst"]) and lease > v["burst"]:
                self.fail(name, "lease_tokens", f"must be <= burst ({v['burst']}), got {lease}")
        if not isinstance(v["dry_run"], bool):
            self.fail(name, "dry_run", f"must be true or false, got {v['dry_run']!r}")
        if not (isinstance(v["meter_event"], str) and METER_EVENT.match(v["meter_event"])):
            self.fail(
                name, "meter_event", f"must match {METER_EVENT.pattern}, got {v['meter_event']!r}"
            )
        if not isinstance(v["description"], str):
            self.fail(name, "description", f"must be a string, got {v['description']!r}")
        if not isinstance(v["free_signup"], bool):
            self.fail(name, "free_signup", f"must be true or false, got {v['free_signup']!r}")
        elif v["free_signup"] and (v["stripe_prices"] or v["price_amount"]):
            self.fail(name, "free_signup", "a tier anyone signs up for without Stripe has no "
                      "stripe_prices or price_amount")  # fmt: skip
        features = self.string_list(name, "features", v["features"], FEATURE_NAME)
        prices = self.string_list(name, "stripe_prices", v["stripe_prices"], PRICE_ID)
        amount, overage = v["price_amount"], v["overage_unit_amount"]
        if amount is not None and not (_is_int(amount) and amount >= 0):
            self.fail(
                name, "price_amount", f"must be an integer >= 0 (minor units), got {amount!r}"
            )
        elif amount is not None and (not prices or prices[0].startswith("price_")):
            self.fail(name, "stripe_prices", "a tier with price_amount needs a lookup key first "
                      "(not a price_ id): `tollway stripe sync` gives that key to its Price")  # fmt: skip
        if not (isinstance(v["currency"], str) and CURRENCY.match(v["currency"])):
            self.fail(
                name,
                "currency",
                f"must be a 3-letter ISO code in lower case, got {v['currency']!r}",
            )
        if v["interval"] not in ("month", "year"):
            self.fail(name, "interval", f'must be "month" or "year", got {v["interval"]!r}')
        if overage is not None:
            overage = self.decimal(name, "overage_unit_amount", overage)
            if overage is not None and amount is None:
                self.fail(name, "overage_unit_amount", "needs price_amount (0 for usage alone)")
        billed = self.string_list(name, "bill_statuses", v["bill_statuses"], OUTCOME)
        if not isinstance(v["refund_quota"], bool):
            self.fail(name, "refund_quota", f"must be true or false, got {v['refund_quota']!r}")
        usage_meter = v["usage_meter"]
        if not (
            isinstance(usage_meter, str) and (usage_meter == "" or METER_EVENT.match(usage_meter))
        ):
            self.fail(name, "usage_meter", f"must match {METER_EVENT.pattern}, got {usage_meter!r}")
        elif usage_meter and usage_meter == v["meter_event"]:
            self.fail(name, "usage_meter", "must differ from meter_event (requests and amounts are "
                      "two meters)")  # fmt: skip
        unit = self.decimal(name, "usage_unit_amount", v["usage_unit_amount"])
        if unit is not None and not usage_meter:
            self.fail(name, "usage_unit_amount", "needs usage_meter (the meter it prices)")
        elif unit is not None and amount is None:
            self.fail(name, "usage_unit_amount", "needs price_amount (0 for usage alone)")
        if (
            len(self.problems) > before
            or over is None
            or store is None
            or report is None
            or limiter is None
        ):
            return None
        if limiter is LimiterKind.LEASE and lease is None:
            lease = max(1, v["burst"] // 10)
        return Tier(
            name=name,
            requests_per_second=float(rps),
            burst=v["burst"],
            monthly_quota=quota,
            over_quota=over,
            features=frozenset(features),
            stripe_prices=tuple(prices),
            on_store_error=store,
            dry_run=v["dry_run"],
            meter_event=v["meter_event"],
            report=report,
            limiter=limiter,
            lease_tokens=lease if limiter is LimiterKind.LEASE else 0,
            price_amount=amount,
            currency=v["currency"],
            interval=v["interval"],
            overage_unit_amount=overage,
            bill_statuses=frozenset(billed),
            refund_quota=v["refund_quota"],
            usage_meter=usage_meter,
            usage_unit_amount=unit,
            description=v["description"],
            free_signup=v["free_signup"],
        )

    def decimal(self, tier: str, key: str, value: object) -> str | None:
        """A price per unit in minor units: a decimal string (a TOML number is accepted)."""
        if value is None:
            return None
        text = str(value) if _is_int(value) or isinstance(value, float) else value
        if not (isinstance(text, str) and DECIMAL.match(text)):
            self.fail(tier, key, f'must be a decimal >= 0 like "0.05", got {value!r}')
            return None
        return text

    def choice(self, tier: str, key: str, value: object, enum: type[E], present: bool) -> E | None:
        if not present:
            return None
        if isinstance(value, str) and value in {e.value for e in enum}:
            return enum(value)
        allowed = " or ".join(f'"{e.value}"' for e in enum)
        self.fail(tier, key, f"must be {allowed}, got {value!r}")
        return None


def check_limits(source: str, limits: Mapping[str, object]) -> list[str]:
    """Problems with an account's overrides (requests_per_second, burst, monthly_quota,
    features), in the tier table's words: ``account sub_1: field "burst": must be ...``."""
    v = _Validator(source)
    for key in sorted(set(limits) - {"requests_per_second", "burst", "monthly_quota", "features"}):
        v.fail(None, key, "cannot be overridden per account")
    v.limits(None, limits)
    if "features" in limits:
        v.string_list(None, "features", limits["features"], FEATURE_NAME)
    return v.problems


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
