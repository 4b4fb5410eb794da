"""Every Redis key name tollway uses, built here and nowhere else.

All of one API key's state shares the hash tag ``{<key_id>}``, so the check script's keys land
in one Redis Cluster slot:

    tw:{<key_id>}:key     hash   the key record (tollway.records.KeyRecord)
    tw:{<key_id>}:state   hash   token bucket (tokens, ts_ms) and quota (q_period, q_used)
    tw:{<key_id>}:usage   hash   window start (epoch s) -> requests let through; metering drains it

Stripe objects get the same treatment, tagged by their id, so each webhook event's own writes
(state plus idempotency marker) are in one slot:

    tw:{<sub_id>}:sub            hash    subscription state (webhook.subscriptions.SubState)
    tw:{<sub_or_cus_id>}:keys    set     key ids issued for that subscription or customer
    tw:{<subject>}:evt:<evt_id>  string "applied", then "done": one event's idempotency marker
    tw:{<cs_id>}:checkout        hash    the key issued for a checkout session
    tw:{<cs_id>}:claim           string  that key, sealed, until claimed or the TTL ends
"""

from __future__ import annotations

import re

# Stripe ids are [A-Za-z0-9_]; we also allow "-" for customer ids an operator makes up.
# Anything else is rejected: a brace, for one, would break the hash tag.
STRIPE_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")

PREFIX = "tw"


def _tag(key_id: str) -> str:
    return f"{PREFIX}:{{{key_id}}}"


def key_record(key_id: str) -> str:
    return f"{_tag(key_id)}:key"


def key_state(key_id: str) -> str:
    return f"{_tag(key_id)}:state"


def key_usage(key_id: str) -> str:
    return f"{_tag(key_id)}:usage"


def check_keys(key_id: str) -> list[str]:
    """KEYS for the check script, in the order check.lua reads them."""
    return [key_record(key_id), key_state(key_id), key_usage(key_id)]


def record_pattern() -> str:
    """SCAN pattern matching every key record."""
    return f"{PREFIX}:{{*}}:key"


def _stripe(object_id: str) -> str:
    if not STRIPE_ID.match(object_id):
        raise ValueError(f"not a Stripe id: {object_id[:80]!r}")
    return _tag(object_id)


def subscription_state(subscription: str) -> str:
    return f"{_stripe(subscription)}:sub"


def owned_keys(owner: str) -> str:
    """The set of key ids issued for a subscription (sub_...) or a customer (cus_...)."""
    return f"{_stripe(owner)}:keys"


def event_marker(subject: str, event_id: str) -> str:
    if not STRIPE_ID.match(event_id):
        raise ValueError(f"not a Stripe event id: {event_id[:80]!r}")
    return f"{_stripe(subject)}:evt:{event_id}"


def checkout_record(session: str) -> str:
    return f"{_stripe(session)}:checkout"


def checkout_claim(session: str) -> str:
    """The sealed key awaiting its one claim; Redis expires it after the claim window."""
    return f"{_stripe(session)}:claim"
