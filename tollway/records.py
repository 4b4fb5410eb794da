"""The key record: what Redis holds about one API key (never the key itself)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import StrEnum

# The period a key without a subscription is metered over; check.lua rolls it forward.
DEFAULT_PERIOD_S = 30 * 24 * 3600
# The fixed UTC windows of a tier's per_day and per_hour caps (check.lua counts in them).
DAY_S, HOUR_S = 86_400, 3_600


class KeyStatus(StrEnum):
    ACTIVE = "active"
    PAST_DUE = "past_due"  # allowed until grace_until, then 402
    SUSPENDED = "suspended"  # 402
    REVOKED = "revoked"  # 401, final
    PENDING = "pending"  # 402 until the first payment


class KeyState(StrEnum):
    """What a key is now, as check.lua decides it: what every listing shows (``key_state``)."""

    ACTIVE = "active"
    PAST_DUE = "past_due"  # let through until grace_until, then 402
    PENDING = "pending"  # 402 until the first payment
    SUSPENDED = "suspended"  # 402: an operator's hold on the key or on its account
    REVOKED = "revoked"  # 401, final
    EXPIRED = "expired"  # 401, final: a rotated key past its overlap


# The states a key cannot leave: it is refused 401, and no change brings it back.
FINAL = frozenset({KeyState.REVOKED, KeyState.EXPIRED})


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    hash: str  # key digest, see tollway.keys.KeyHasher
    status: KeyStatus
    tier: str
    customer: str
    created: int  # epoch seconds
    mode: str = "live"
    subscription: str = ""
    grace_until: int = 0
    period_start: int = 0
    period_end: int = 0
    hold: str = ""  # "operator" while an operator has suspended the key (402), else ""
    expires_at: int = 0  # epoch s after which the key counts as revoked (rotation overlap)
    sync_version: int = 0  # the subscription state version last copied onto this record
    prefix: str = ""  # the key's first characters, to tell keys apart in listings
    last_used: int = 0  # epoch s of a request let through, kept to the minute by check.lua
    successor: str = ""  # the key id this key was rotated to ("" if it was never rotated)
    name: str = ""  # the operator's label for the key
    external_id: str = ""  # the operator's own id for whom the key is (its user), indexed
    metadata: str = ""  # the operator's string pairs, as JSON text ("" for none)
    # Pepper rotation (tollway/keys.py): the fingerprint of the pepper ``hash`` is under ("" on
    # records older than fingerprints), and, once the key was moved to a new pepper, its digest
    # under the one it was found under, so that processes not yet given the new pepper still
    # find it.
    pepper: str = ""
    hash_prev: str = ""

    @classmethod
    def template(
        cls,
        tier: str,
        customer: str,
        created: int,
        subscription: str = "",
        status: KeyStatus = KeyStatus.ACTIVE,
    ) -> KeyRecord:
        """A record for a key yet to be drawn (no id or hash), metered over DEFAULT_PERIOD_S from
        ``created`` until its subscription says otherwise."""
        return cls(
            key_id="",
            hash="",
            status=status,
            tier=tier,
            customer=customer,
            created=created,
            subscription=subscription,
            period_start=created,
            period_end=created + DEFAULT_PERIOD_S,
        )

    @property
    def account(self) -> str:
        """The account whose bucket, quota and usage this key draws on: its subscription if it
        has one, else its customer (docs/accounts.md)."""
        return self.subscription or self.customer

    def to_redis(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> KeyRecord:
        """Rebuild a record from an HGETALL reply. Raises ValueError if it is malformed."""
        try:
            return cls(
                key_id=raw["key_id"],
                hash=raw["hash"],
                status=KeyStatus(raw["status"]),
                tier=raw["tier"],
                customer=raw["customer"],
                created=int(raw["created"]),
                mode=raw.get("mode", "live"),
                subscription=raw.get("subscription", ""),
                grace_until=int(raw.get("grace_until", 0)),
                period_start=int(raw.get("period_start", 0)),
                period_end=int(raw.get("period_end", 0)),
                hold=raw.get("hold", ""),
                expires_at=int(raw.get("expires_at", 0)),
                sync_version=int(raw.get("sync_version", 0)),
                prefix=raw.get("prefix", ""),
                last_used=int(raw.get("last_used", 0)),
                successor=raw.get("successor", ""),
                name=raw.get("name", ""),
                external_id=raw.get("external_id", ""),
                metadata=raw.get("metadata", ""),
                pepper=raw.get("pepper", ""),
                hash_prev=raw.get("hash_prev", ""),
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"malformed key record: {exc!r}") from None

    def listing(self, state: KeyState) -> dict[str, object]:
        """One line of ``tollway keys list`` (``state``: ``key_state`` of it): never the key,
        nor its digest."""
        return {
            "key_id": self.key_id,
            "prefix": self.prefix,
            "status": state.value,
            "tier": self.tier,
            "created": self.created,
            "last_used": self.last_used,
            "expires_at": self.expires_at,
        }

    def public(self) -> dict[str, object]:
        """The record as an operator may see it: everything but the digests."""
        out = dataclasses.asdict(self)
        del out["hash"], out["hash_prev"]
        out["status"] = self.status.value
        out["metadata"] = self.meta
        return out

    @property
    def meta(self) -> dict[str, str]:
        """The operator's metadata pairs ({} for none, or for text that is not a JSON object)."""
        if not self.metadata:
            return {}
        try:
            value = json.loads(self.metadata)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def key_state(record: KeyRecord, account_hold: str, now: int) -> KeyState:
    """The key's state at ``now`` (epoch s), decided in check.lua's order: revoked, then past
    its expiry, then an operator's hold on the key or its account (``account_hold``, "" for
    none), then its billing status. The one answer to "what is this key now?"."""
    if record.status is KeyStatus.REVOKED:
        return KeyState.REVOKED
    if record.expires_at and now >= record.expires_at:
        return KeyState.EXPIRED
    if record.hold or account_hold:
        return KeyState.SUSPENDED
    return KeyState(record.status.value)


@dataclass(frozen=True)
class Period:
    """An account's billing period, to find the period a window belongs to."""

    start: int
    end: int

    def start_for(self, window: int) -> int:
        """The start of the period containing ``window``: rolled by whole periods, as check.lua does."""
        length = self.end - self.start if self.end > self.start else DEFAULT_PERIOD_S
        return self.start + ((window - self.start) // length) * length
