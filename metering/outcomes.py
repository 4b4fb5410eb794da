"""What an access-log entry means for billing, decided without I/O.

``read_entry`` pulls what tollway needs out of Envoy's HTTPAccessLogEntry; ``judge`` says what
to do with it: nothing (billed as counted), a refund, or an amount for the usage meter.
metering/receiver.py does the I/O around them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tollway.tiers import Tier
from tollway.usage_stamp import METADATA_KEY, NAMESPACE

# Where Envoy's header_to_metadata filter puts the upstream's x-tollway-usage (envoy.yaml).
AMOUNT_NAMESPACE = "tollway"
AMOUNT_KEY = "usage"

# Envoy's response flags that mean the upstream did not give a whole answer.
TIMEOUT_FLAGS = ("upstream_request_timeout", "upstream_max_stream_duration_reached")
RESET_FLAGS = (
    "upstream_remote_reset",
    "upstream_connection_failure",
    "upstream_connection_termination",
    "upstream_overflow",
    "no_healthy_upstream",
    "upstream_retry_limit_exceeded",
    "upstream_protocol_error",
    "local_reset",
    "no_cluster_found",
    "dns_resolution_failure",
)
_DIGITS = re.compile(r"^[0-9]{1,19}$")


class BadAmount(StrEnum):
    """Why a reported amount was ignored (tollway_accesslog_bad_amounts_total's label)."""

    NEGATIVE = "negative"
    NOT_INTEGER = "not_integer"
    TOO_LARGE = "too_large"
    REPEATED = "repeated"


@dataclass(frozen=True)
class Entry:
    request_id: str
    stamp: str  # authz's usage stamp, "" if the entry has none
    code: int  # the final response code, 0 if none was sent
    flags: frozenset[str]  # Envoy's response flags that are set
    amount: str | None  # the upstream's x-tollway-usage, as Envoy passed it on
    details: str = ""  # Envoy's response code details

    @property
    def envoy_answered_for_authz(self) -> bool:
        """Envoy answered 503 itself because its ext_authz call failed or timed out."""
        return self.details == "ext_authz_error" and self.code == 503


def outcome(code: int, flags: frozenset[str]) -> str:
    """The request's final outcome in the words of a tier's bill_statuses."""
    if any(f in flags for f in TIMEOUT_FLAGS):
        return "timeout"
    if any(f in flags for f in RESET_FLAGS):
        return "reset"
    if code == 0:
        return "aborted"  # the client went away before any answer
    return str(code)


def parse_amount(raw: str | None, cap: int) -> tuple[int, BadAmount | None]:
    """(amount, why it is ignored): a whole number 0..cap, once."""
    if raw is None or raw == "":
        return 0, None
    text = raw.strip()
    if "," in text:
        return 0, BadAmount.REPEATED  # Envoy joins a repeated header's values with commas
    if text.startswith("-") and _DIGITS.match(text[1:]):
        return 0, BadAmount.NEGATIVE
    if not _DIGITS.match(text):
        return 0, BadAmount.NOT_INTEGER
    n = int(text)
    if n > cap:
        return 0, BadAmount.TOO_LARGE
    return n, None


@dataclass(frozen=True)
class Verdict:
    refund: bool  # not billed: take it off the counted usage
    refund_quota: bool  # and give its quota back
    amount: int  # billed: this much to the tier's usage meter
    bad_amount: BadAmount | None = None


def judge(entry: Entry, tier: Tier | None, cap: int) -> Verdict:
    """What the entry of a request authz counted changes. An unknown tier bills as counted."""
    if tier is None:
        return Verdict(False, False, 0)
    amount, bad = parse_amount(entry.amount, cap)
    if not tier.bills(outcome(entry.code, entry.flags)):
        return Verdict(True, tier.refund_quota, 0, bad)
    return Verdict(False, False, amount if tier.usage_meter or tier.credits_per_unit else 0, bad)


def _string(struct: Any, namespace: str, key: str) -> str | None:
    fm = struct.filter_metadata
    if namespace not in fm:
        return None
    fields = fm[namespace].fields
    if key not in fields:
        return None
    value = fields[key]
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return str(value.string_value)
    if kind == "number_value":
        return repr(value.number_value)
    return None


def read_entry(log: Any) -> Entry:
    """An ``envoy.data.accesslog.v3.HTTPAccessLogEntry`` as an ``Entry``."""
    common = log.common_properties
    flags = frozenset(
        f.name
        for f, v in common.response_flags.ListFields()
        if v is True or f.name == "unauthorized_details"
    )
    code = log.response.response_code.value if log.response.HasField("response_code") else 0
    return Entry(
        request_id=log.request.request_id,
        stamp=_string(common.metadata, NAMESPACE, METADATA_KEY) or "",
        code=int(code),
        flags=flags,
        amount=_string(common.metadata, AMOUNT_NAMESPACE, AMOUNT_KEY),
        details=log.response.response_code_details,
    )
