"""The seam between the servicer and its store: what a check asks of Redis, and how it fails.

``RedisCheckStore`` (authz/redis_check_store.py: check.lua in coalesced pipelines over the
lean client) implements it; the servicer and the worker depend only on this protocol, as
envoyproxy/ratelimit's service depends only on its ``RateLimitCache``, and one check is one
``StoreCheck``, as its ``DoLimit`` takes one request.

Two failures, told apart on purpose:

    Exception
    ├── StoreUnavailable   the store is broken: a timeout, a connection error, an error or
    │                      unparseable reply, or the breaker is open. The tier's
    │                      on_store_error policy answers.
    └── Overloaded         this process ran out of its check deadline for reasons of its own
                           load. The store is not blamed: 503 overloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from authz.check_reply import CheckReply
from authz.check_tiers import TierArgs
from authz.usage_buffer import UsageBuffer
from tollway.errors import Unavailable


class ScriptCall(StrEnum):
    """What one call of check.lua does (its ARGV[8])."""

    SETTLE = "0"  # count a lease's requests and return its tokens; no request of its own
    CHECK = "1"  # one request
    LEASE = "2"  # one request, and a lease if the key's tier leases


# Not frozen, for speed: see CheckReply (authz/check_reply.py).
@dataclass(slots=True)
class StoreCheck:
    """What one call of the store decides: a request of ``key_id`` presenting ``digest``, at
    ``cost`` bucket tokens, with ``tier_args`` giving the check values of a tier by name
    (from the table in force); and a lease settlement carried along, if one is owed: ``spent``
    requests to count and ``returned`` tokens to give back, applied once per ``settlement``
    id however often the call is retried. ``ScriptCall.SETTLE`` (cost 0) only settles."""

    key_id: str
    digest: str
    cost: int
    tier_args: TierArgs
    spent: int = 0
    returned: int = 0
    call: ScriptCall = ScriptCall.CHECK
    settlement: str = ""
    slot: str = ""  # the request's id for its concurrency slot (its usage stamp's nonce)


class StoreUnavailable(Unavailable):
    """The store could not give an answer for this check."""


class Overloaded(Unavailable):
    """The check did not finish within its deadline for reasons of our own load."""


class CheckStore(Protocol):
    @property
    def breaker_open(self) -> bool:
        """True while calls are refused without trying (the store was judged down)."""
        ...

    async def check(self, request: StoreCheck) -> CheckReply:
        """Decide ``request``. Raises StoreUnavailable or Overloaded."""
        ...

    def tier_of(self, key_id: str) -> str:
        """The tier the store last reported for ``key_id`` ("" if none is remembered)."""
        ...

    def external_id_of(self, key_id: str) -> str:
        """The operator's id for the key's user, as the key was issued with ("" for none, or
        if the key is not remembered)."""
        ...

    def own_id(self, key_id: str) -> str:
        """The key's own id: ``key_id``, unless the store found the key by the id it has under
        a newer key pepper than it was issued under (tollway/key_store.py ``move``)."""
        ...

    def usage_source(self, key_id: str) -> str:
        """Where usage counted for ``key_id`` outside the store goes: its account if known,
        else the key id (metering finds the account from the key's record)."""
        ...

    async def note_unheard(self, request_id: str, stamp: str) -> None:
        """Keep ``stamp`` under ``request_id`` for the access-log receiver (an allowed check
        Envoy gave up on). Raises on failure."""
        ...

    async def write_back(self, buffer: UsageBuffer) -> int | None:
        """Write usage counted while the store was away; the requests written, or None when
        the store is still judged down. Raises on failure; the buffer keeps what it holds."""
        ...
