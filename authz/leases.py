"""Lease mode: each authz process spends small batches of a key's tokens without asking Redis.

For a tier with ``limiter = "lease"``, a passing check.lua call also takes up to
``lease_tokens`` extra tokens from the key's bucket in Redis (never past the quota) and hands
them to this process, together with what it answered about the key (tier, customer, billing
state). Until the lease runs out or expires (``ttl_s``), checks of that key are decided here,
from the lease, with no Redis call. The next call to Redis for the key, or the sweeper once the
lease has expired, settles it: the requests it let through are counted (quota and the usage
window metering bills) and its unused tokens go back to the bucket.

What lease mode trades, bounded and documented in the README:
- the shared bucket is never overdrawn (leased tokens have left it), but tokens leased to one
  process cannot serve another until returned: at most ``lease_tokens`` per process per key;
- the quota can be passed by at most ``lease_tokens`` per other process holding a lease;
- a key's state change (revocation, payment, tier) reaches a lease through pub/sub
  invalidation (authz/invalidation.py), and in any case within ``ttl_s``;
- usage is exact, but requests are counted in the usage window of their settlement, at most
  ``ttl_s`` (plus one sweep interval) after they were let through.

No awaits in here: every method runs to completion on the event loop, so nothing races. A
check that finds a renewal in flight may wait for it (``renewal``): when a lease runs out
under load, the checks behind it then spend the new lease instead of each asking Redis.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from hmac import compare_digest

from authz.check_reply import CheckReply

DEFAULT_LEASE_TTL_S = 1.0


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a call to Redis owes for a key's closed leases, under one idempotency id."""

    key_id: str
    digest: str
    spent: int  # requests to count
    returned: int  # tokens to give back
    id: str  # "" when nothing is owed


@dataclass(slots=True)
class Lease:
    digest: str
    out: CheckReply  # what check.lua answered when it granted the lease
    tokens: int  # left to spend here
    expires: float  # monotonic seconds
    spent: int = 0  # requests let through on it, not yet counted in Redis

    def outcome(self, burst: int, rate: float) -> CheckReply:
        """What to tell the client: the bucket as last seen plus what this lease still holds."""
        o = self.out
        remaining = o.remaining + self.tokens
        full_ms = int((burst - remaining) * 1000 / rate) if remaining < burst else 0
        # Built directly: dataclasses.replace inspects the fields on every call.
        return CheckReply(
            o.code,
            o.tier,
            o.customer,
            remaining,
            full_ms,
            o.quota_used + self.spent,
            o.period_end,
            o.grace_until,
            o.would_deny,
            o.now_ms,
            0,
        )


class LeaseBook:
    def __init__(
        self, ttl_s: float, now: Callable[[], float] = time.monotonic, accepting: bool = True
    ) -> None:
        self.ttl_s = ttl_s
        self._now = now
        # New leases are taken only while key changes can reach them: authz's invalidation
        # listener sets this once it is subscribed, and clears it when it loses the channel.
        self.accepting = accepting
        self._live: dict[str, Lease] = {}
        self._closed: dict[str, Lease] = {}  # no longer spendable, not yet settled
        self._renewing: set[str] = set()
        # key id -> a future the renewal in flight resolves, made only when a check waits
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._retries: dict[str, Settlement] = {}

    def __len__(self) -> int:
        return len(self._live)

    def peek(self, key_id: str, digest: str) -> Lease | None:
        """The key's live lease, if it is unexpired and was granted to this very key."""
        lease = self._live.get(key_id)
        if lease is None or self._now() >= lease.expires:
            return None
        return lease if compare_digest(lease.digest, digest) else None

    @staticmethod
    def spend(lease: Lease, cost: int) -> bool:
        """Let one request through on ``lease`` if it holds ``cost`` tokens."""
        if lease.tokens < cost:
            return False
        lease.tokens -= cost
        lease.spent += 1
        return True

    def settle(self, key_id: str) -> Settlement:
        """Close the key's leases for a call to Redis: what it must count and give back.
        If the call fails, hand the settlement to ``retry``: it is owed until Redis has it."""
        if key_id not in self._live and key_id not in self._closed:
            return Settlement(key_id, "", 0, 0, "")  # the common case: nothing owed
        spent = returned = 0
        digest = ""
        for book in (self._live, self._closed):
            lease = book.pop(key_id, None)
            if lease is not None:
                spent += lease.spent
                returned += lease.tokens
                digest = lease.digest
        sid = secrets.token_hex(8) if spent or returned else ""
        return Settlement(key_id, digest, spent, returned, sid)

    def retry(self, s: Settlement) -> None:
        """Keep a settlement whose call failed; ``due`` hands it out again, with the same id,
        so that if the failed call did reach Redis, the retry changes nothing."""
        if s.id:
            self._retries[s.id] = s

    @property
    def owed(self) -> int:
        """Requests let through on leases and not yet counted in Redis."""
        return (
            sum(x.spent for x in self._live.values())
            + sum(x.spent for x in self._closed.values())
            + sum(x.spent for x in self._retries.values())
        )

    def grant(self, key_id: str, digest: str, out: CheckReply) -> None:
        if out.granted <= 0:
            return
        expires = self._now() + self.ttl_s
        lease = self._live.get(key_id)
        if lease is not None and lease.digest == digest:  # a concurrent grant: merge
            lease.tokens += out.granted
            lease.out, lease.expires = out, expires
        else:
            self.close(key_id)
            self._live[key_id] = Lease(digest, out, out.granted, expires)

    def close(self, key_id: str) -> None:
        """Stop spending the key's lease (its state changed); the sweeper settles it."""
        lease = self._live.pop(key_id, None)
        if lease is None:
            return
        held = self._closed.get(key_id)
        if held is not None:
            lease.spent += held.spent
            lease.tokens += held.tokens
        self._closed[key_id] = lease

    def close_all(self) -> None:
        for key_id in list(self._live):
            self.close(key_id)

    def due(self) -> list[Settlement]:
        """Every settlement owed now (closed or expired leases, failed settlements), removed
        from the book: the caller sends each, and hands failures back to ``retry``."""
        now = self._now()
        for key_id in [k for k, lease in self._live.items() if now >= lease.expires]:
            self.close(key_id)
        out = [self.settle(k) for k in list(self._closed)]
        out += self._retries.values()
        self._retries = {}
        return [x for x in out if x.id]

    def renewing(self, key_id: str) -> bool:
        """Claim the key's one lease renewal in flight; False if another check has it."""
        if key_id in self._renewing:
            return False
        self._renewing.add(key_id)
        return True

    def renewed(self, key_id: str) -> None:
        self._renewing.discard(key_id)
        waiter = self._waiters.pop(key_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def renewal(self, key_id: str) -> asyncio.Future[None] | None:
        """The key's renewal in flight, to wait for instead of asking Redis alongside it (its
        lease may serve this check); None if there is none. It resolves however the renewal
        ends, and the renewal runs under the check deadline."""
        if key_id not in self._renewing:
            return None
        waiter = self._waiters.get(key_id)
        if waiter is None:
            waiter = self._waiters[key_id] = asyncio.get_running_loop().create_future()
        return waiter
