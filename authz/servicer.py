"""The gRPC servicer: CheckRequest in, CheckResponse out; it only wires the pieces together.

CheckRequest -> request.extract -> keys.parse_key -> CheckStore.check (Redis) -> decision.on_reply
-> responses.build. Every exception a check can meet is handled here or in Limiter: a
malformed request or store failure is a clear denial, never a gRPC error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from authz import responses
from authz.check_reply import Code
from authz.check_store import CheckStore, Overloaded, ScriptCall, StoreUnavailable
from authz.decision import (
    Decision,
    deny,
    invalid_key,
    missing_key,
    on_reply,
    on_store_error,
)
from authz.leases import DEFAULT_LEASE_TTL_S, LeaseBook
from authz.metrics import AuthzMetrics
from authz.negatives import NegativeCache
from authz.policy import Policy
from authz.reasons import Reason
from authz.request import RequestInfo, RouteConfigError, extract, extract_http
from authz.usage_buffer import UsageBuffer
from tollway.keys import KeyHasher, parse_key
from tollway.logs import fields
from tollway.tiers import LimiterKind, TierTable
from tollway.usage_log import REQUEST_ID, Stamper

log = logging.getLogger("tollway.authz")

# How many keys' last allowed (customer, tier) are remembered for on_store_error = "allow".
KNOWN_KEYS_MAX = 100_000
# How many presented keys' digests are remembered (the oldest is forgotten first).
IDENTITIES_MAX = 65_536


class AuthzServicer:
    """Envoy's Authorization service; ``Check`` answers serialized bytes (responses.add_to_server)."""

    def __init__(
        self,
        policy: Policy,
        store: CheckStore,
        hasher: KeyHasher,
        buffer: UsageBuffer,
        metrics: AuthzMetrics,
        leases: LeaseBook | None = None,
        stamper: Stamper | None = None,
    ) -> None:
        """``stamper``: sign a usage stamp on every counted request, for Envoy's access log
        (tollway/usage_log.py); None: the usage log is off."""
        self.policy = policy
        self.stamper = stamper
        self._unheard_notes: set[asyncio.Task[None]] = set()
        self.store = store
        self.hasher = hasher
        self.buffer = buffer
        self.metrics = metrics
        self.leases = leases if leases is not None else LeaseBook(DEFAULT_LEASE_TTL_S)
        self.unknown_keys = NegativeCache()  # digests Redis did not know, for a minute
        # digest -> (customer, tier) last allowed: what on_store_error = "allow" answers from
        self._last_allowed: dict[str, tuple[str, str]] = {}
        self._breaker_shown: bool | None = None  # what tollway_authz_breaker_open says
        # presented key -> (digest, key id), for well-formed keys (the checksum holds)
        self._identities: dict[str, tuple[str, str]] = {}

    def use_tiers(self, table: TierTable) -> None:
        """Decide every check from now on by ``table`` (a reload of the tier file)."""
        self.policy = Policy(table)

    async def Check(self, request: Any, context: Any) -> bytes:
        d = self._begin(extract, request)
        if isinstance(d, Decision):
            return responses.build(d)
        # The decision runs on if Envoy gives up on the RPC (its timeout cancels the handler):
        # what Redis counted for it is then known, and counted as unheard.
        decided = asyncio.ensure_future(d)
        try:
            return responses.build(await asyncio.shield(decided))
        except asyncio.CancelledError:
            decided.add_done_callback(self._unheard)
            raise

    def _unheard(self, decided: asyncio.Future[Decision]) -> None:
        if not decided.cancelled() and decided.exception() is None:
            self.unheard(decided.result())

    def unheard(self, d: Decision) -> None:
        """``d`` was decided after Envoy stopped waiting for it: Envoy answered 503 itself. If
        it was counted, that is counted here, and its stamp is left for the access-log
        receiver, which refunds it when Envoy's entry for the request confirms the 503."""
        if not d.allowed:
            return
        self.metrics.answers_unheard.inc()
        if d.usage_log and REQUEST_ID.match(d.request_id):
            task = asyncio.ensure_future(self.store.note_unheard(d.request_id, d.usage_log))
            self._unheard_notes.add(task)
            task.add_done_callback(self._noted)

    def _noted(self, task: asyncio.Task[None]) -> None:
        self._unheard_notes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("unheard_note_failed", extra=fields(error=str(task.exception())))

    def _stamped(self, d: Decision, info: RequestInfo, at: float) -> Decision:
        """``d``, with its usage stamp if it lets a counted request through."""
        if self.stamper is not None and d.reason is None:
            d.request_id = info.request_id
            source = self.store.usage_source(d.key_id)
            d.usage_log = self.stamper.sign(source, d.key_id, d.tier, int(at))
        return d

    def decide_http(self, headers: Mapping[str, str]) -> Decision | Awaitable[Decision]:
        """HTTP mode: the headers of Envoy's authorization request (names lowercased). The
        decision itself when it needs no await (no key, a bad or unknown key, a lease that
        covers the check), so the HTTP front answers without a task; else an awaitable."""
        return self._begin(extract_http, headers)

    def _begin(
        self, read: Callable[[Any], RequestInfo], request: Any
    ) -> Decision | Awaitable[Decision]:
        start = time.perf_counter()
        try:
            info = read(request)
        except RouteConfigError as exc:
            return self._finish(self._misconfigured(exc), start)
        local = self._local(info)
        if isinstance(local, Decision):
            return self._finish(local, start)
        return self._remote_finished(info, local, start)

    async def _remote_finished(
        self, info: RequestInfo, local: tuple[str, str, Policy], start: float
    ) -> Decision:
        return self._finish(await self._remote(info, *local), start)

    def _finish(self, d: Decision, start: float) -> Decision:
        self.metrics.observe(d, time.perf_counter() - start)
        if d.reason is not None or d.would_deny is not None or d.degraded:
            self._log(d)
        return d

    @staticmethod
    def _misconfigured(exc: RouteConfigError) -> Decision:
        log.error("route_misconfigured", extra=fields(detail=str(exc)))
        return deny(Reason.ROUTE_MISCONFIGURED)

    def _local(self, info: RequestInfo) -> Decision | tuple[str, str, Policy]:
        """The decision if this process can make it alone; else what asking Redis needs:
        (digest, key id, the tier table of this check)."""
        if info.key is None:
            return missing_key()
        identity = self._identify(info.key)
        if identity is None:
            return invalid_key()
        digest, key_id = identity
        if digest in self.unknown_keys:  # Redis said so within the last minute
            return invalid_key(key_id)
        policy = self.policy  # one table for the whole check, even if a reload lands meanwhile
        local = self._from_lease(info, key_id, digest, policy)
        return local if local is not None else (digest, key_id, policy)

    async def _remote(
        self, info: RequestInfo, digest: str, key_id: str, policy: Policy
    ) -> Decision:
        known = self._last_allowed.get(digest)
        tier = policy.tier(known[1]) if known is not None else None
        if tier is not None and tier.limiter is LimiterKind.LEASE:
            renewal = self.leases.renewal(key_id)
            if renewal is not None:  # its new lease may serve this check too
                await renewal
                local = self._from_lease(info, key_id, digest, policy)
                if local is not None:
                    return local
        return await self._ask_store(info, key_id, digest, policy)

    def _from_lease(
        self, info: RequestInfo, key_id: str, digest: str, policy: Policy
    ) -> Decision | None:
        """The answer from this process's lease on the key, if it has one that covers it."""
        lease = self.leases.peek(key_id, digest)
        if lease is None:
            return None
        tier = policy.tier_for(lease.out)
        if (
            tier is not None
            and tier.limiter is LimiterKind.LEASE
            and (info.feature is None or info.feature in tier.features)
            and self.leases.spend(lease, info.cost)
        ):
            d = on_reply(info, key_id, lease.outcome(tier.burst, tier.requests_per_second), tier)
            # Counted when the lease is settled: in the window of that moment, near enough.
            return self._stamped(d, info, time.time()) if self.stamper is not None else d
        return None

    async def _ask_store(
        self, info: RequestInfo, key_id: str, digest: str, policy: Policy
    ) -> Decision:
        owed = self.leases.settle(key_id)
        # One lease renewal per key at a time, and none while key changes cannot reach leases.
        renewing = self.leases.accepting and self.leases.renewing(key_id)
        try:
            out = await self.store.check(
                key_id, digest, info.cost, policy.tier_args(info.feature),
                owed.spent, owed.returned, ScriptCall.LEASE if renewing else ScriptCall.CHECK, owed.id,
            )  # fmt: skip
        except StoreUnavailable as exc:
            self.leases.retry(owed)
            return self._store_error(info, key_id, digest, policy, exc)
        except Overloaded as exc:
            self.leases.retry(owed)
            log.warning("overloaded", extra=fields(key_id=key_id, error=str(exc)))
            return deny(Reason.OVERLOADED, key_id=key_id)
        finally:
            if renewing:
                self.leases.renewed(key_id)
            breaker = self.store.breaker_open
            if breaker is not self._breaker_shown:  # prometheus' Gauge.set takes a lock
                self._breaker_shown = breaker
                self.metrics.breaker_open.set(1 if breaker else 0)
        if out.code is Code.OK:
            self._remember(digest, out.customer, out.tier)
            self.leases.grant(key_id, digest, out)
        elif out.code in (Code.UNKNOWN_KEY, Code.REVOKED, Code.PAYMENT):
            self._last_allowed.pop(digest, None)
            self.leases.close(key_id)
            if out.code is Code.UNKNOWN_KEY:
                self.unknown_keys.add(digest)
        d = on_reply(info, key_id, out, policy.tier_for(out))
        return self._stamped(d, info, out.now_ms / 1000) if self.stamper is not None else d

    async def settle_leases(self) -> int:
        """Send every settlement owed (expired or closed leases, failed settlements); returns
        how many requests were counted. Failures stay owed, under the same settlement id."""
        due = self.leases.due()
        if not due:
            return 0
        policy = self.policy
        results = await asyncio.gather(
            *(self.store.check(s.key_id, s.digest, 0, policy.tier_args(None), s.spent,
                                 s.returned, ScriptCall.SETTLE, s.id) for s in due),
            return_exceptions=True,
        )  # fmt: skip
        counted = 0
        for s, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                self.leases.retry(s)
            else:
                counted += s.spent
        return counted

    def _store_error(
        self, info: RequestInfo, key_id: str, digest: str, policy: Policy, exc: Exception
    ) -> Decision:
        self.metrics.store_errors.inc()
        known = self._last_allowed.get(digest)
        d = on_store_error(info, key_id, known, policy.tier(known[1]) if known else None)
        if d.degraded:
            now = time.time()
            self.buffer.add(self.store.usage_source(key_id), now)
            self.metrics.buffered_usage.set(len(self.buffer))
            self._stamped(d, info, now)
        log.warning("store_error", extra=fields(key_id=key_id, error=str(exc)))
        return d

    def _identify(self, key: str) -> tuple[str, str] | None:
        """(digest, key id) of a well-formed key, or None. Well-formed keys seen before are
        answered from a bounded map: the checksum and hash cost about 3 µs a check."""
        known = self._identities.get(key)
        if known is not None:
            return known
        if parse_key(key) is None:
            return None
        digest = self.hasher.digest(key)
        if len(self._identities) >= IDENTITIES_MAX:
            self._identities.pop(next(iter(self._identities)))  # the oldest entry
        known = self._identities[key] = (digest, self.hasher.key_id(digest))
        return known

    def _remember(self, digest: str, customer: str, tier: str) -> None:
        if self._last_allowed.get(digest) == (customer, tier):
            return
        if len(self._last_allowed) >= KNOWN_KEYS_MAX:
            self._last_allowed.pop(next(iter(self._last_allowed)))  # the oldest entry
        self._last_allowed[digest] = (customer, tier)

    def _log(self, d: Decision) -> None:
        log.info(
            "decision",
            extra=fields(
                reason=d.reason.value if d.reason else "ok",
                would_deny=d.would_deny.value if d.would_deny else None,
                degraded=d.degraded,
                key_id=d.key_id,
                customer=d.customer,
                tier=d.tier,
            ),
        )
