"""Every Redis key name tollway uses, built here and nowhere else.

An account (docs/accounts.md) is the subscription when there is one, otherwise the customer.
Everything one check reads or writes shares the account's hash tag, so check.lua's keys land
in one Redis Cluster slot:

    tw:{<account>}:key:<key_id>  hash   a key record (tollway.records.KeyRecord)
    tw:{<account>}:account       hash   the account: customer, subscription, tier, period,
                                        cancel_at, sync_version; its token bucket (tokens, ts),
                                        quota (q_period, q_used) and day and hour caps' windows
                                        (d_start, d_used, h_start, h_used), shared by all its keys;
                                        a prepaid account's balance (credits)
    tw:{<account>}:usage         hash   window start (epoch s) -> requests let through;
                                        metering drains it
    tw:{<account>}:credits:hours hash   a prepaid account's ledger by UTC hour: "r:<hour>"
                                        credits requests spent, "u:<hour>" reported units
                                        spent, "f:<hour>" refunded (check.lua, the receiver)
    tw:{<account>}:credits:log   stream its other ledger entries: purchases, refunds of them,
                                        operator grants and adjustments (tollway/credits.py)
    tw:{<account>}:recharge      hash   its auto-recharge: card on file, threshold, pack, last
                                        outcome; "at:<top-up>" once per crossing
    tw:portal:recharge-pass      string held by the portal process making this pass
    tw:{<account>}:credits:refs  hash   ref (a Checkout session, a refunded payment, an
                                        Idempotency-Key) -> credits moved under it, so far
    tw:{<key_id>}:key            hash   the key directory: {account, tier, external_id}
                                        (authz caches it); under the id a key has by a newer
                                        pepper than it was issued under, also key_id: its own
    tw:{<account>}:logged:<window>  set  stamp nonces of that window the access-log receiver
                                        applied (metering/receiver.py), expiring
    tw:portal:signin:<sha256>    string a sign-in link's customer, for 15 minutes (one use)
    tw:throttle:<kind>:<sha256>  string  requests of a kind by one address or IP in a window
    tw:{<customer>}:sessions     string  the customer's portal session generation
    tw:portal:signup:<sha256>    string a free sign-up's confirmation link, for 15 minutes
    tw:portal:free:<sha256>      string the free customer an address signed up as
    tw:{<customer>}:profile      hash   a free customer's address
    tw:{<account>}:alerts        hash   "<period start>:<threshold>" -> JSON usage alert record
    tw:{<account>}:alert-lock:<field>  string  the portal process delivering that alert
    tw:portal:alert-pass         string held for one alert interval by the portal process
                                        whose loop makes this interval's pass
    tw:audit                     stream every change to a key or an account: who, what, when
                                        (tollway/audit.py; trimmed by length and age)
    tw:api:tokens                set    the ids of the management API's operator tokens
    tw:api:token:<id>            hash   one token: digest, name, scopes, created, revoked
    tw:{<request id>}:unheard    string a stamp authz wrote for an allowed check Envoy gave up
                                        waiting for (its own 503), for the receiver to refund
    tw:store-id                  string this store's id (tollway/store_identity.py): spooled
                                        usage goes back only into the store it names

The usage hash also holds "a:<window>" (amounts the upstream reported, for the tier's
usage_meter), and "carry"/"carry_at" (refunds still to be taken off a later window); see
tollway/lua/usage_take.lua.

Stripe objects get the same treatment, tagged by their id, so each webhook event's own writes
(state plus idempotency marker) are in one slot:

    tw:{<sub_id>}:sub            hash    subscription state (webhook.subscriptions.SubState)
    tw:{<sub_or_cus_id>}:keys    set     key ids issued for that subscription or customer
    tw:{<subject>}:evt:<evt_id>  string "applied", then "done": one event's idempotency marker
    tw:{<cs_id>}:checkout        hash    the key issued for a checkout session
    tw:{<cs_id>}:claim           string  that key, sealed, until claimed or the TTL ends
    tw:{<cs_id>}:unknown         string  Stripe did not know that session id (10 minutes)

Metering moves usage on, every hop idempotent (see metering/ledger.py). ``<source>`` is the
tag usage was counted under: an account, or a key id (usage an authz process counted while it
did not know the key's account; metering finds it from the key's record):

    tw:{<source>}:outbox         hash    "<window>:<seq>" -> requests taken out of usage
    tw:{<source>}:outseq         string  the outbox's sequence counter
    tw:{<customer>}:xfer:<source>:<window>:<seq>   string  an outbox entry's transfer marker
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

from tollway.errors import InvalidInput

# Stripe ids are [A-Za-z0-9_]; we also allow "-" for customer ids an operator makes up.
# Anything else is rejected: a brace, for one, would break the hash tag.
STRIPE_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")

PREFIX = "tw"
# Pub/sub channel: a key id is published on it whenever that key's record changes.
KEY_CHANGES = f"{PREFIX}:key-changes"


def _tag(key_id: str) -> str:
    return f"{PREFIX}:{{{key_id}}}"


def key_directory(key_id: str) -> str:
    """Where a key id finds its account (``account``), the tier it was issued on and, for an
    id by a newer pepper (tollway/key_store.py ``move``), the key's own id (``key_id``)."""
    return f"{_tag(key_id)}:key"


def key_record(key_id: str, account: str) -> str:
    """A key's record, in its account's slot. (No id check: it is on the check path, and an
    account comes from a directory entry the KeyStore wrote after checking the id.)"""
    return f"{_tag(account)}:key:{key_id}"


def account_state(account: str) -> str:
    """An account's plan, bucket, quota and overrides (no id check, as ``key_record``)."""
    return f"{_tag(account)}:account"


def usage(source: str) -> str:
    """Requests let through, by window, under a usage source (an account, or a key id)."""
    return f"{_tag(source)}:usage"


def in_flight(source: str) -> str:
    """An account's requests in flight, for its max_concurrent cap: a sorted set of slots
    (the request's usage-stamp nonce), each scored by the Redis time in ms it lapses at
    (check.lua takes one; the access-log receiver frees it when the request ends)."""
    return f"{_tag(source)}:inflight"


def applied_marker(source: str, write_id: str) -> str:
    """Marks one idempotent usage write (a lease settlement, a buffered count) as applied, so
    that a retry of it never counts twice. In the slot of the usage it writes."""
    return f"{_tag(source)}:applied:{write_id}"


def credit_hours(account: str) -> str:
    """A prepaid account's ledger by UTC hour: credits spent by requests and by reported
    units, and credits refunded (check.lua and apply_log_entry.lua write it)."""
    return f"{_tag(account)}:credits:hours"


def credit_log(account: str) -> str:
    """A prepaid account's ledger entries other than usage: purchases, refunds of them,
    operator grants and adjustments (a stream; tollway/credits.py)."""
    return f"{_tag(account)}:credits:log"


def credit_refs(account: str) -> str:
    """What each reference (a Checkout session, a refunded payment, an Idempotency-Key) has
    moved of an account's credits so far, so that a repeat moves nothing more."""
    return f"{_tag(account)}:credits:refs"


def check_keys(key_id: str, account: str, settlement: str = "") -> list[str]:
    """KEYS for the check script, in the order check.lua reads them."""
    keys = [
        key_record(key_id, account),
        account_state(account),
        usage(account),
        in_flight(account),
        credit_hours(account),
    ]
    if settlement:
        keys.append(applied_marker(account, settlement))
    return keys


def logged(source: str, window: int) -> str:
    """The request ids of ``window`` whose access-log entries were applied to ``source``."""
    return f"{_tag(source)}:logged:{window}"


def unheard(request_id: str) -> str:
    """authz's stamp for a request it allowed after Envoy stopped waiting (a request id is
    checked against tollway.usage_stamp.REQUEST_ID before it gets here: no braces)."""
    return f"{_tag(request_id)}:unheard"


def signin_token(digest: str) -> str:
    """A one-time sign-in link, by its token's SHA-256 (portal/signin.py): the customer."""
    return f"{PREFIX}:portal:signin:{digest}"


def throttle(kind: str, digest: str) -> str:
    """Requests of ``kind`` (a sign-in link per address or IP, a Checkout per IP...) by one
    requester, by its SHA-256, for one window (tollway/throttle.py)."""
    assert kind.replace("_", "").isalnum()
    return f"{PREFIX}:throttle:{kind}:{digest}"


def session_generation(customer: str) -> str:
    """A customer's portal session generation: sign-out bumps it, ending every session."""
    return f"{_tag(customer)}:sessions"


def alerts(account: str) -> str:
    """An account's usage alerts (portal/alerter.py): one field per period and threshold."""
    return f"{_tag(account)}:alerts"


def alert_lock(account: str, field: str) -> str:
    """Held by the one portal process delivering an alert (a few seconds, then it expires)."""
    return f"{_tag(account)}:alert-lock:{field}"


ALERT_PASS = f"{PREFIX}:portal:alert-pass"
RECHARGE_PASS = f"{PREFIX}:portal:recharge-pass"  # the portal process making this pass
EXPIRY_PASS = f"{PREFIX}:portal:expiry-pass"  # and this credit expiry pass


def recharge(account: str) -> str:
    """A prepaid account's auto-recharge (tollway/recharge.py): the card on file, the
    customer's choice, the last outcome, and one field per crossing it charged for."""
    return f"{_tag(account)}:recharge"


# The audit log (tollway/audit.py): a stream of every change to a key or an account.
AUDIT = f"{PREFIX}:audit"
# This store's id (tollway/store_identity.py).
STORE_ID = f"{PREFIX}:store-id"
# The management API's operator tokens (tollway/api_tokens.py): the set of their ids.
API_TOKENS = f"{PREFIX}:api:tokens"


def api_token(token_id: str) -> str:
    """One operator API token: its digest, name, scopes, creation and revocation times."""
    return f"{PREFIX}:api:token:{token_id}"


def idempotency(token_id: str, digest: str) -> str:
    """A management API POST's answer, by its token and its Idempotency-Key's SHA-256: the
    request's fingerprint, then its answer (api/idempotency.py); Redis expires it."""
    return f"{PREFIX}:api:idem:{token_id}:{digest}"


# The ordered indexes the management API pages through (tollway/key_index.py): sorted sets
# of "<created, 10 digits>:<key id>" (keys) or account ids (accounts), all at score 0, read
# by ZRANGE BYLEX so that a page costs Redis O(log n + page).
KEY_INDEX = f"{PREFIX}:idx:keys"
ACCOUNT_INDEX = f"{PREFIX}:idx:accounts"


def keys_of_owner(owner: str) -> str:
    """The key index of one account or customer (a customer's also lists its subscriptions')."""
    return f"{PREFIX}:idx:keys:owner:{owner}"


def keys_of_external(external_id: str) -> str:
    """The key index of one of the operator's own users (a key's ``external_id``)."""
    return f"{PREFIX}:idx:keys:ext:{external_id}"


def signup_token(digest: str) -> str:
    """A free sign-up's confirmation link, by its token's SHA-256 (portal/signup.py)."""
    return f"{PREFIX}:portal:signup:{digest}"


def free_customer(digest: str) -> str:
    """The free customer an address signed up as, by the address's SHA-256: one per address."""
    return f"{PREFIX}:portal:free:{digest}"


def profile(customer: str) -> str:
    """What tollway itself knows of a customer Stripe does not: a free customer's address."""
    return f"{_stripe(customer)}:profile"


# When the access-log receiver last heard from Envoy (Redis time, s): metering says refunds
# are not being applied when it is older than the grace.
ACCESS_LOG_HEARD = f"{PREFIX}:metering:accesslog-heard"


def _stripe(object_id: str) -> str:
    if not STRIPE_ID.match(object_id):
        raise InvalidInput(f"not a Stripe id: {object_id[:80]!r}")
    return _tag(object_id)


def subscription_state(subscription: str) -> str:
    return f"{_stripe(subscription)}:sub"


def owned_keys(owner: str) -> str:
    """The set of key ids issued for a subscription (sub_...) or a customer (cus_...)."""
    return f"{_stripe(owner)}:keys"


def event_marker(subject: str, event_id: str) -> str:
    if not STRIPE_ID.match(event_id):
        raise InvalidInput(f"not a Stripe event id: {event_id[:80]!r}")
    return f"{_stripe(subject)}:evt:{event_id}"


def checkout_record(session: str) -> str:
    return f"{_stripe(session)}:checkout"


def checkout_claim(session: str) -> str:
    """The sealed key awaiting its one claim; Redis expires it after the claim window."""
    return f"{_stripe(session)}:claim"


def unknown_checkout(session: str) -> str:
    """A Checkout Session id Stripe did not know, remembered so a claim of it costs no Stripe
    call for a while (webhook/gate.py)."""
    return f"{_stripe(session)}:unknown"


def outbox(source: str) -> str:
    return f"{_tag(source)}:outbox"


def outbox_seq(source: str) -> str:
    return f"{_tag(source)}:outseq"


def transfer_marker(customer: str, source: str, entry: str) -> str:
    return f"{_stripe(customer)}:xfer:{source}:{entry}"


def ledger(customer: str, part: str) -> str:
    """The customer's metering ledger: part is open, gen, pending, sent, lock or period."""
    assert part in ("open", "gen", "pending", "sent", "lock", "period")
    return f"{_stripe(customer)}:{part}"


DEAD_LETTERS = f"{PREFIX}:metering:deadletters"


def tag_of(name: str) -> str:
    """The hash tag inside a key name: ``tw:{abc}:usage`` -> ``abc``."""
    return name[name.index("{") + 1 : name.index("}")]
