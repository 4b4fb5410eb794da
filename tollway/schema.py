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

Metering moves usage on, every hop idempotent (see metering/ledger.py):

    tw:{<key_id>}:outbox         hash    "<window>:<seq>" -> requests taken out of usage
    tw:{<key_id>}:outseq         string  the outbox's sequence counter
    tw:{<customer>}:xfer:<key_id>:<window>:<seq>   string  an outbox entry's transfer marker
    tw:{<customer>}:open         hash    "<meter>|<window>" -> closed usage, all keys summed
    tw:{<customer>}:period       hash    "<meter>|<period start>" -> usage this period (overage)
    tw:{<customer>}:gen          hash    "<meter>|<window>" -> claims made for that window
    tw:{<customer>}:pending      hash    "<meter>|<window>|<gen>" -> JSON meter event to send
    tw:{<customer>}:sent         hash    "<meter>|<window>" -> requests Stripe has accepted
    tw:{<customer>}:lock         string  the send lock: the metering daemon sending for them
    tw:metering:deadletters      hash    identifier -> JSON: event and Stripe's refusal
"""

from __future__ import annotations

import re

# Stripe ids are [A-Za-z0-9_]; we also allow "-" for customer ids an operator makes up.
# Anything else is rejected: a brace, for one, would break the hash tag.
STRIPE_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")

PREFIX = "tw"
# Pub/sub channel: a key id is published on it whenever that key's record changes.
KEY_CHANGES = f"{PREFIX}:key-changes"


def _tag(key_id: str) -> str:
    return f"{PREFIX}:{{{key_id}}}"


def key_record(key_id: str) -> str:
    return f"{_tag(key_id)}:key"


def key_state(key_id: str) -> str:
    return f"{_tag(key_id)}:state"


def key_usage(key_id: str) -> str:
    return f"{_tag(key_id)}:usage"


def applied_marker(key_id: str, write_id: str) -> str:
    """Marks one idempotent usage write (a lease settlement, a buffered count) as applied, so
    that a retry of it never counts twice."""
    return f"{_tag(key_id)}:applied:{write_id}"


def check_keys(key_id: str, settlement: str = "") -> list[str]:
    """KEYS for the check script, in the order check.lua reads them."""
    keys = [key_record(key_id), key_state(key_id), key_usage(key_id)]
    if settlement:
        keys.append(applied_marker(key_id, settlement))
    return keys


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


def outbox(key_id: str) -> str:
    return f"{_tag(key_id)}:outbox"


def outbox_seq(key_id: str) -> str:
    return f"{_tag(key_id)}:outseq"


def transfer_marker(customer: str, key_id: str, entry: str) -> str:
    return f"{_stripe(customer)}:xfer:{key_id}:{entry}"


def ledger(customer: str, part: str) -> str:
    """The customer's metering ledger: part is open, gen, pending, sent, lock or period."""
    assert part in ("open", "gen", "pending", "sent", "lock", "period")
    return f"{_stripe(customer)}:{part}"


DEAD_LETTERS = f"{PREFIX}:metering:deadletters"


def tag_of(name: str) -> str:
    """The hash tag inside a key name: ``tw:{abc}:usage`` -> ``abc``."""
    return name[name.index("{") + 1 : name.index("}")]
