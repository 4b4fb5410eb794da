"""One check, top to bottom: what Envoy sent in, the decision, the answer out.

``decide`` reads a check as it runs: the request's terms and key (authz/request.py), what this
process can answer alone (no key, a malformed or recently unknown key, a lease that covers
it), else what the check store answers (check.lua in Redis), turned into a verdict by the pure
decision (authz/decision.py); then the metrics and the decision log. ``Check`` (gRPC) and the
HTTP front (authz/http_front.py) only translate bytes around it. Every exception a check can
meet is handled here or in the store: a malformed request or a store failure is a clear
denial, never a gRPC error.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from authz import responses
from authz.bounded import BoundedMap
from authz.check_reply import SLOT_HELD, Code
from authz.check_store import CheckStore, Overloaded, ScriptCall, StoreCheck, StoreUnavailable
from authz.check_tiers import CheckTiers
from authz.decision import Decision, deny, invalid_key, missing_key, on_reply, on_store_error
from authz.leases import DEFAULT_LEASE_TTL_S, LeaseBook, Settlement
from authz.metrics import AuthzMetrics
from authz.negatives import NegativeCache
from authz.reasons import Reason
from authz.request import RequestInfo, RouteConfigError, extract, extract_http
from authz.usage_buffer import UsageBuffer
from tollway.keys import KeyHasher, parse_key
from tollway.logs import fields
from tollway.nonces import nonces
from tollway.tiers import LimiterKind, TierTable
from tollway.usage_stamp import REQUEST_ID, Stamper

log = logging.getLogger("tollway.authz")

NOTHING_OWED = Settlement("", "", 0, 0, "")

# How many presented keys' (digest, key id) are remembered by default (TOLLWAY_AUTHZ_KEY_CACHE),
# so that a key seen before costs no checksum and no hash.
IDENTITIES_MAX = 100_000
# How many digests' last allowed customer is remembered, for on_store_error = "allow".
ALLOWED_MAX = 100_000


class AuthzServicer:
    """Envoy's Authorization service; ``Check`` answers serialized bytes (responses.add_to_server)."""

    def __init__(
        self,
        tiers: CheckTiers,
        store: CheckStore,
        hasher: KeyHasher,
        buffer: UsageBuffer,
        metrics: AuthzMetrics,
        leases: LeaseBook | None = None,
        stamper: Stamper | None = None,
        log_allowed: float = 0.0,
        key_cache: int = IDENTITIES_MAX,
        earlier: Callable[[str], Awaitable[tuple[str, str] | None]] | None = None,
        slots: bool = True,
    ) -> None:
        """``stamper``: sign a usage stamp on every counted request, for Envoy's access log
        (tollway/usage_stamp.py); None: the usage log is off. ``log_allowed``: the share of
        allowed decisions logged (every denial, dry-run and degraded answer is); ``key_cache``:
        presented keys whose digest and id are remembered. ``earlier``: while the key pepper
        rotates, finds a key the store does not know under the pepper in force under an
        earlier one and moves it (tollway/key_store.py ``KeyStore.move``): (the digest its
        record holds, its key id), or None. ``slots``: an allowed request of an account under
        a concurrency cap takes a slot, named by its usage stamp's nonce, which Envoy's access
        log frees; off for callers outside Envoy (the API's verify), whose requests are held
        to the cap but take no slot."""
        self.tiers = tiers
        self.store = store
        self.hasher = hasher
        self.buffer = buffer
        self.metrics = metrics
        self.leases = leases if leases is not None else LeaseBook(DEFAULT_LEASE_TTL_S)
        self.stamper = stamper
        self.log_allowed = log_allowed
        self.earlier = earlier
        self.unknown_keys = NegativeCache()  # digests Redis did not know, for a minute
        # presented key -> (digest, key id), for well-formed keys (the checksum holds)
        self._identities: BoundedMap[str, tuple[str, str]] = BoundedMap(key_cache)
        # digest -> the customer it was last allowed as: what on_store_error = "allow" trusts
        self._allowed: BoundedMap[str, str] = BoundedMap(ALLOWED_MAX)
        self._decision_ids = nonces("authz-")  # a logged decision's id when Envoy sent none
        self._slot_ids = nonces() if slots else None  # a request's slot and its stamp's nonce
        self._unheard_notes: set[asyncio.Task[None]] = set()
        self._breaker_shown: bool | None = None  # what tollway_authz_breaker_open says

    def use_tiers(self, table: TierTable) -> None:
        """Decide every check from now on by ``table`` (a reload of the tier file)."""
        self.tiers = CheckTiers(table)

    async def Check(self, request: Any, context: Any) -> bytes:
        d = self.decide(extract, request)
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

    def decide_http(self, headers: Mapping[str, str]) -> Decision | Awaitable[Decision]:
        """HTTP mode: the headers of Envoy's authorization request (names lowercased)."""
        return self.decide(extract_http, headers)

    def decide(
        self, read: Callable[[Any], RequestInfo], request: Any
    ) -> Decision | Awaitable[Decision]:
        """The decision for one request as ``read`` finds it in ``request``. The decision
        itself when this process makes it alone, so that an answer needs no task; else an
        awaitable of the store's."""
        start = time.perf_counter()
        try:
            info = read(request)
        except RouteConfigError as exc:
            log.error("route_misconfigured", extra=fields(detail=str(exc)))
            return self._done(deny(Reason.ROUTE_MISCONFIGURED), None, start)
        if info.key is None:
            return self._done(missing_key(), info, start)
        identity = self._identify(info.key)
        if identity is None:
            return self._done(invalid_key(), info, start)
        digest, key_id = identity
        if digest in self.unknown_keys:  # Redis said so within the last minute
            return self._done(invalid_key(key_id), info, start)
        tiers = self.tiers  # one table for the whole check, even if a reload lands meanwhile
        served = self._from_lease(info, key_id, digest, tiers)
        if served is not None:
            return self._done(served, info, start)
        return self._ask_store(info, key_id, digest, tiers, start)

    async def _ask_store(
        self,
        info: RequestInfo,
        key_id: str,
        digest: str,
        tiers: CheckTiers,
        start: float,
        look_earlier: bool = True,
    ) -> Decision:
        """The store's decision, after waiting for a renewal of the key's lease already under
        way, if one is: its new lease may serve this check too. A key the store does not know
        is looked for under the earlier key peppers, if any (``look_earlier``)."""
        tier = tiers.tier(self.store.tier_of(key_id))
        if tier is not None and tier.limiter is LimiterKind.LEASE:
            renewal = self.leases.renewal(key_id)
            if renewal is not None:
                await renewal
                served = self._from_lease(info, key_id, digest, tiers)
                if served is not None:
                    return self._done(served, info, start)
        # A lease is the default bucket's: a route naming a bucket neither renews one nor
        # carries its settlement (whose tokens go back to the default bucket).
        own_bucket = info.bucket is not None
        owed = self.leases.settle(key_id) if not own_bucket else NOTHING_OWED
        # One lease renewal per key at a time, and none while key changes cannot reach leases.
        renewing = not own_bucket and self.leases.accepting and self.leases.renewing(key_id)
        call = ScriptCall.LEASE if renewing else ScriptCall.CHECK
        request = StoreCheck(
            key_id,
            digest,
            info.cost,
            tiers.tier_args(info.feature, info.bucket),
            owed.spent,
            owed.returned,
            call,
            owed.id,
            next(self._slot_ids) if self._slot_ids is not None else "",
        )
        try:
            out = await self.store.check(request)
        except StoreUnavailable as exc:
            self.leases.retry(owed)
            return self._done(self._store_error(info, key_id, digest, tiers, exc), info, start)
        except Overloaded as exc:
            self.leases.retry(owed)
            log.warning("overloaded", extra=fields(key_id=key_id, error=str(exc)))
            return self._done(deny(Reason.OVERLOADED, key_id=key_id), info, start)
        finally:
            if renewing:
                self.leases.renewed(key_id)
            self._show_breaker()
        if out.code is Code.UNKNOWN_KEY and look_earlier and self.earlier is not None:
            return await self._look_earlier(info, key_id, digest, tiers, start)
        own_id = self.store.own_id(key_id)
        if own_id != key_id:  # found by the id it has under a newer pepper: named by its own
            key_id = own_id
            self._identities[info.key or ""] = (digest, own_id)
        if out.code is Code.OK:
            if self._allowed.get(digest) != out.customer:
                self._allowed[digest] = out.customer
            self.leases.grant(key_id, digest, out)
        elif out.code in (Code.UNKNOWN_KEY, Code.REVOKED, Code.PAYMENT):
            self._allowed.pop(digest, None)
            self.leases.close(key_id)
            if out.code is Code.UNKNOWN_KEY:
                self.unknown_keys.add(digest)
        tier_out = tiers.tier_for(out, info.bucket)
        d = on_reply(info, key_id, out, tier_out, self.store.external_id_of(key_id))
        slot = request.slot if out.granted == SLOT_HELD else ""  # check.lua took it
        stamped = self._stamped(d, info, out.now_ms / 1000, slot, out.charged)
        return self._done(stamped, info, start)

    async def _look_earlier(
        self, info: RequestInfo, key_id: str, digest: str, tiers: CheckTiers, start: float
    ) -> Decision:
        """The decision for a key the store does not know under the pepper in force: found
        (and moved) under an earlier one, it is decided as that key from now on; else 401."""
        assert self.earlier is not None and info.key is not None
        try:
            found = await self.earlier(info.key)
        except Exception as exc:  # redis-py's errors, as the store's would be
            unavailable = StoreUnavailable(f"looking a key up under earlier peppers: {exc}")
            return self._done(
                self._store_error(info, key_id, digest, tiers, unavailable), info, start
            )
        if found is None:
            self.unknown_keys.add(digest)
            return self._done(invalid_key(key_id), info, start)
        self._identities[info.key] = found
        found_digest, own_id = found
        return await self._ask_store(info, own_id, found_digest, tiers, start, look_earlier=False)

    def _from_lease(
        self, info: RequestInfo, key_id: str, digest: str, tiers: CheckTiers
    ) -> Decision | None:
        """The answer from this process's lease on the key, if it has one that covers it."""
        lease = self.leases.peek(key_id, digest)
        if lease is None:
            return None
        tier = tiers.tier_for(lease.out)
        if (
            tier is not None
            and tier.limiter is LimiterKind.LEASE
            and (info.feature is None or info.feature in tier.features)
            and tier.bucket(info.bucket) is None  # the lease is the default bucket's
            and self.leases.spend(lease, info.cost)
        ):
            outcome = lease.outcome(tier.burst, tier.requests_per_second)
            d = on_reply(info, key_id, outcome, tier, self.store.external_id_of(key_id))
            if self.stamper is None:
                return d
            # Counted when the lease is settled: in the window of that moment, near enough. A
            # prepaid request's credits were reserved with the lease: its stamp names them.
            credits = tier.credits_per_request * info.cost if tier.prepaid else 0
            return self._stamped(d, info, time.time(), credits=credits)
        return None

    def _store_error(
        self, info: RequestInfo, key_id: str, digest: str, tiers: CheckTiers, exc: Exception
    ) -> Decision:
        self.metrics.store_errors.inc()
        customer = self._allowed.get(digest)
        tier = tiers.tier(self.store.tier_of(key_id)) if customer is not None else None
        d = on_store_error(info, key_id, customer, tier)
        if d.degraded:
            now = time.time()
            self.buffer.add(self.store.usage_source(key_id), now)
            self.metrics.buffered_usage.set(len(self.buffer))
            self._stamped(d, info, now)
        log.warning("store_error", extra=fields(key_id=key_id, error=str(exc)))
        return d

    def _stamped(
        self, d: Decision, info: RequestInfo, at: float, slot: str = "", credits: int = 0
    ) -> Decision:
        """``d``, with its usage stamp if it lets a counted request through, naming the
        concurrency slot it holds, if any (the access log frees it), and the prepaid credits
        it spent (the access log gives them back if the request is not billed)."""
        if self.stamper is not None and d.reason is None:
            d.request_id = info.request_id
            source = self.store.usage_source(d.key_id)
            d.usage_stamp = self.stamper.sign(source, d.key_id, d.tier, int(at), slot, credits)
        return d

    def _done(self, d: Decision, info: RequestInfo | None, start: float) -> Decision:
        self.metrics.observe(d, time.perf_counter() - start)
        if (
            d.reason is not None
            or d.would_deny is not None
            or d.degraded
            or (self.log_allowed and random.random() < self.log_allowed)  # noqa: S311 (sampling)
        ):
            self._log(d, info.request_id if info is not None else "")
        return d

    def _log(self, d: Decision, request_id: str) -> None:
        """One decision log line, named by Envoy's x-request-id (so that it can be matched to
        Envoy's access log) or, when Envoy sent none usable, by an id of authz's own."""
        log.info(
            "decision",
            extra=fields(
                request_id=request_id if REQUEST_ID.match(request_id) else next(self._decision_ids),
                reason=d.reason.value if d.reason else "ok",
                would_deny=d.would_deny.value if d.would_deny else None,
                degraded=d.degraded,
                key_id=d.key_id,
                customer=d.customer,
                tier=d.tier,
            ),
        )

    def _identify(self, key: str) -> tuple[str, str] | None:
        """(digest, key id) of a well-formed key, or None."""
        known = self._identities.get(key)
        if known is not None:
            return known
        if parse_key(key) is None:
            return None
        digest = self.hasher.digest(key)
        known = self._identities[key] = (digest, self.hasher.key_id(digest))
        return known

    def _show_breaker(self) -> None:
        breaker = self.store.breaker_open
        if breaker is not self._breaker_shown:  # prometheus' Gauge.set takes a lock
            self._breaker_shown = breaker
            self.metrics.breaker_open.set(1 if breaker else 0)

    async def settle_leases(self) -> int:
        """Send every settlement owed (expired or closed leases, failed settlements); returns
        how many requests were counted. Failures stay owed, under the same settlement id."""
        due = self.leases.due()
        if not due:
            return 0
        args = self.tiers.tier_args(None)
        settlements = [
            StoreCheck(s.key_id, s.digest, 0, args, s.spent, s.returned, ScriptCall.SETTLE, s.id)
            for s in due
        ]
        results = await asyncio.gather(
            *(self.store.check(s) for s in settlements), return_exceptions=True
        )
        counted = 0
        for s, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                self.leases.retry(s)
            else:
                counted += s.spent
        return counted

    def unheard(self, d: Decision) -> None:
        """``d`` was decided after Envoy stopped waiting for it: Envoy answered 503 itself. If
        it was counted, that is counted here, and its stamp is left for the access-log
        receiver, which refunds it when Envoy's entry for the request confirms the 503."""
        if not d.allowed:
            return
        self.metrics.answers_unheard.inc()
        if d.usage_stamp and REQUEST_ID.match(d.request_id):
            task = asyncio.ensure_future(self.store.note_unheard(d.request_id, d.usage_stamp))
            self._unheard_notes.add(task)
            task.add_done_callback(self._noted)

    def _unheard(self, decided: asyncio.Future[Decision]) -> None:
        if not decided.cancelled() and decided.exception() is None:
            self.unheard(decided.result())

    def _noted(self, task: asyncio.Task[None]) -> None:
        self._unheard_notes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("unheard_note_failed", extra=fields(error=str(task.exception())))
