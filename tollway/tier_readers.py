"""How a tier field's TOML value is read and checked (tollway/tiers.py declares which field
uses which): each reader returns the field's value or raises ``Bad`` with what it must be."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from tollway.errors import InvalidInput

TIER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
FEATURE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# A named bucket: a route's tollway_bucket, and a [tiers.NAME.buckets.BUCKET] table.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
MAX_BUCKETS = 16  # named buckets per tier
MAX_PACKS = 8  # credit packs per prepaid tier
MAX_CREDITS = 10**12  # in one pack, or one operator adjustment: far from Redis's 2**63
PRICE_ID = re.compile(r"^\S{1,200}$")
METER_EVENT = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")  # Stripe's event_name: at most 100
# A request's final outcome, as metering's access-log receiver names it (metering/outcomes.py):
# a status class or code, or what happened instead of an answer from the upstream.
OUTCOME = re.compile(r"^([1-5]xx|[1-5][0-9][0-9]|reset|timeout|aborted)$")
CURRENCY = re.compile(r"^[a-z]{3}$")
DECIMAL = re.compile(r"^\d{1,12}(\.\d{1,12})?$")
# Billed by default: whatever the upstream answered below 500, and a client that hung up before
# the answer (the upstream may have done the work; not billing it would make it free).
DEFAULT_BILL_STATUSES = ("2xx", "3xx", "4xx", "aborted")


class Bad(InvalidInput):
    """A TOML value a field cannot take; the message says what it must be."""


Reader = Callable[[Any], Any]  # a TOML value -> the field's value; raises Bad


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def at_least(low: int, note: str = "") -> Reader:
    def read(v: Any) -> int:
        if not (_is_int(v) and v >= low):
            raise Bad(f"must be an integer >= {low}{note}, got {v!r}")
        return int(v)

    return read


def positive_number(v: Any) -> float:
    if not ((_is_int(v) or isinstance(v, float)) and math.isfinite(v) and v > 0):
        raise Bad(f"must be a number > 0, got {v!r}")
    return float(v)


def flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise Bad(f"must be true or false, got {v!r}")
    return v


def choice(enum: type[StrEnum]) -> Reader:
    def read(v: Any) -> StrEnum:
        if isinstance(v, str) and v in {e.value for e in enum}:
            return enum(v)
        allowed = " or ".join(f'"{e.value}"' for e in enum)
        raise Bad(f"must be {allowed}, got {v!r}")

    return read


def strings(pattern: re.Pattern[str], into: Callable[[list[str]], Any]) -> Reader:
    def read(v: Any) -> Any:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise Bad(f"must be a list of strings, got {v!r}")
        bad = [x for x in v if not pattern.match(x)]
        if bad:
            raise Bad(f"invalid entries {bad!r} (allowed: {pattern.pattern})")
        return into(v)

    return read


def string(
    pattern: re.Pattern[str] | None = None, message: str = "", empty: bool = False
) -> Reader:
    def read(v: Any) -> str:
        if not isinstance(v, str):
            raise Bad(message.format(v=v) if message else f"must be a string, got {v!r}")
        if pattern is not None and not (pattern.match(v) or (empty and v == "")):
            raise Bad(
                message.format(v=v) if message else f"must match {pattern.pattern}, got {v!r}"
            )
        return v

    return read


def decimal(v: Any) -> str:
    """A price per unit in minor units: a decimal string (a TOML number is accepted)."""
    text = str(v) if _is_int(v) or isinstance(v, float) else v
    if not (isinstance(text, str) and DECIMAL.match(text)):
        raise Bad(f'must be a decimal >= 0 like "0.05", got {v!r}')
    return text


@dataclass(frozen=True)
class Bucket:
    """A tier's named bucket, which routes naming it (tollway_bucket) take from instead of the
    tier's default one."""

    name: str
    requests_per_second: float
    burst: int


_BUCKET_FIELDS = ("requests_per_second", "burst")
T = TypeVar("T")


def _named_tables(
    v: Any,
    key: str,
    noun: str,
    most: int,
    fields: tuple[str, str],
    build: Callable[[str, Any, Any], T],
) -> tuple[T, ...]:
    """``[tiers.T.<key>.NAME]`` tables, each with exactly ``fields``, at most ``most`` of them,
    by name: ``build(name, first, second)`` reads each one's values (raising Bad). Problems
    name the table as ``<noun> "NAME"``."""
    if not isinstance(v, dict):
        raise Bad(f"must be a table of [{key}.NAME] tables, got {v!r}")
    if len(v) > most:
        raise Bad(f"at most {most} {noun}s per tier, got {len(v)}")
    both = " and ".join(fields)
    found = []
    for name, body in sorted(v.items()):
        where = f'{noun} "{name}"'
        if not BUCKET_NAME.match(name):
            raise Bad(f"{where}: {noun.split()[-1]} names must match {BUCKET_NAME.pattern}")
        if not isinstance(body, dict):
            raise Bad(f"{where}: must be a table with {both}, got {body!r}")
        unknown = sorted(set(body) - set(fields))
        missing = [f for f in fields if f not in body]
        if unknown or missing:
            raise Bad(
                f"{where}: takes exactly {both}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        try:
            found.append(build(name, body[fields[0]], body[fields[1]]))
        except Bad as exc:
            raise Bad(f"{where}: {exc}") from None
    return tuple(found)


def _bucket(name: str, rate: Any, burst: Any) -> Bucket:
    return Bucket(name, positive_number(rate), at_least(1)(burst))


def buckets(v: Any) -> tuple[Bucket, ...]:
    """``{NAME = {requests_per_second = R, burst = B}, ...}``: ``[tiers.T.buckets.NAME]``."""
    return _named_tables(v, "buckets", "bucket", MAX_BUCKETS, _BUCKET_FIELDS, _bucket)


@dataclass(frozen=True)
class CreditPack:
    """What a customer of a prepaid tier can buy: ``credits`` for ``price_amount`` minor units
    of the tier's currency (a one-time Stripe Price, by `tollway stripe sync`)."""

    name: str
    credits: int
    price_amount: int


_PACK_FIELDS = ("credits", "price_amount")


def _pack(name: str, credits: Any, price: Any) -> CreditPack:
    if not (_is_int(credits) and 1 <= credits <= MAX_CREDITS):
        raise Bad(f"credits must be an integer from 1 to {MAX_CREDITS}, got {credits!r}")
    if not (_is_int(price) and price >= 1):
        raise Bad(f"price_amount must be an integer >= 1 (minor units), got {price!r}")
    return CreditPack(name, int(credits), int(price))


def credit_packs(v: Any) -> tuple[CreditPack, ...]:
    """``{NAME = {credits = C, price_amount = P}, ...}``: ``[tiers.T.credit_packs.NAME]``."""
    return _named_tables(v, "credit_packs", "credit pack", MAX_PACKS, _PACK_FIELDS, _pack)
