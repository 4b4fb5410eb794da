"""The Redis check store: check.lua, one round trip per check, coalesced, under a deadline and
a breaker.

The round trip goes over the lean pipelined client (authz/redis_pipe.py), not redis-py;
redis-py is used here only for the rare write-back of usage buffered while Redis was away.

One pipeline is out at a time. Checks that arrive while it is out wait, and go together as the
next pipeline of EVALSHAs the moment it returns (envoyproxy/ratelimit's pipeline window, sized
by Redis's own round trip instead of a fixed delay): an idle server sends at once, a busy one
sends fewer, fuller pipelines, with one write, one deadline timer and one breaker verdict
per batch. Every check still runs its own script, so each stays atomic on its own
keys, and on Redis Cluster each is routed to its own slot's node.

Failures are the check store's (authz/check_store.py): StoreUnavailable feeds the breaker
and the tier's on_store_error policy answers; Overloaded does not blame Redis.

A timeout around the whole call cannot tell the two apart: under load, replies from a healthy
Redis wait unread behind other work, and cancelling them drops their connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authz.bounded import BoundedMap
from authz.breaker import Breaker
from authz.check_reply import CheckReply, Code
from authz.check_store import Overloaded, ScriptCall, StoreCheck, StoreUnavailable
from authz.redis_clock import RedisClock
from authz.redis_node import ReplyLost
from authz.redis_pipe import ScriptPipe, is_noscript
from authz.usage_buffer import UsageBuffer
from tollway import schema, scripts
from tollway.clock import CheckClock
from tollway.records import DEFAULT_PERIOD_S
from tollway.usage_stamp import UNHEARD_TTL_S

# One batch never carries more than this many checks; the rest go in the next pipeline.
MAX_BATCH = 256

# How many keys' accounts and tiers are remembered by default (TOLLWAY_AUTHZ_KEY_CACHE; the
# oldest is forgotten first). A forgotten or stale entry costs one extra round trip, never a
# wrong answer.
KNOWN_KEYS_MAX = 100_000

# How long a request holds its concurrency slot at most by default (TOLLWAY_AUTHZ_SLOT_S):
# Envoy's default route timeout (15 s), its access log's flush interval (0.5 s), and a margin.
DEFAULT_SLOT_MS = 30_000

# A key id with no directory entry: no such key.
NO_KEY = CheckReply(Code.UNKNOWN_KEY)


# A check waiting for the next pipeline: its EVALSHA command, and the future its reply goes to.
Queued = tuple[tuple[Any, ...], "asyncio.Future[Any]"]

# A buffered write-back that takes longer than this has failed (the store is not answering).
WRITE_BACK_TIMEOUT_S = 1.0


@dataclass(slots=True)
class KnownKey:
    """What this process knows of a key: its account (where its check runs; a key never
    changes account), the tier check.lua last reported for it ("" for none yet), the
    operator's id for its user (set when the key is issued, never changed), and the key's
    own id where it was looked up by the id it has under a newer pepper ("" otherwise)."""

    account: str
    tier: str
    external_id: str = ""
    own_id: str = ""


class RedisCheckStore:
    def __init__(
        self,
        pipe: ScriptPipe,
        redis: Any,
        clock: CheckClock,
        breaker: Breaker,
        deadline_s: float,
        usage_window_s: int,
        on_pipeline: Callable[[], None] = lambda: None,
        expire_after_ms: float | None = None,
        on_reply_lost: Callable[[float], None] = lambda n: None,
        known_keys: int = KNOWN_KEYS_MAX,
        slot_ms: int = DEFAULT_SLOT_MS,
    ) -> None:
        """``pipe`` carries the checks; ``redis`` (redis-py) the write-back.
        ``expire_after_ms``: a check that Redis runs later than this after it was sent is
        void (check.lua answers EXPIRED and writes nothing). Set it below the pipe's read
        timeout, so that whatever Redis runs in time is answered before authz gives up; None:
        off. ``slot_ms``: how long a request holds its concurrency slot at most, if Envoy's
        access log never frees it (TOLLWAY_AUTHZ_SLOT_S)."""
        self.pipe = pipe
        self.redis = redis
        self.clock = clock
        self.breaker = breaker
        self.deadline_s = deadline_s
        self._window = str(usage_window_s)
        self._period = str(DEFAULT_PERIOD_S)
        self._slot_ms = str(slot_ms)
        self._script = scripts.lua("check")
        self._sha = scripts.sha1(self._script)
        self._pending: list[Queued] = []
        self._out: asyncio.Task[None] | None = None  # the pipeline out, if any
        self._since = 0.0
        self._on_pipeline = on_pipeline
        self._on_reply_lost = on_reply_lost
        self.expire_after_ms = expire_after_ms
        self.redis_clock = RedisClock()
        self.keys: BoundedMap[str, KnownKey] = BoundedMap(known_keys)  # by key id

    @property
    def breaker_open(self) -> bool:
        return self.breaker.is_open

    def usage_source(self, key_id: str) -> str:
        known = self.keys.get(key_id)
        return known.account if known is not None else key_id

    def tier_of(self, key_id: str) -> str:
        known = self.keys.get(key_id)
        return known.tier if known is not None else ""

    def external_id_of(self, key_id: str) -> str:
        known = self.keys.get(key_id)
        return known.external_id if known is not None else ""

    def own_id(self, key_id: str) -> str:
        known = self.keys.get(key_id)
        return known.own_id if known is not None and known.own_id else key_id

    async def note_unheard(self, request_id: str, stamp: str) -> None:
        # Off the check path (rare: a check Envoy gave up on), so through redis-py.
        await self.redis.set(schema.unheard(request_id), stamp, ex=UNHEARD_TTL_S)

    async def write_back(self, buffer: UsageBuffer) -> int | None:
        """Write buffered usage back once the breaker lets a call through; its verdict feeds
        the breaker like a check's."""
        if not self.breaker.allow():
            return None
        try:
            n = await asyncio.wait_for(buffer.flush(self.redis), timeout=WRITE_BACK_TIMEOUT_S)
        except Exception:
            self.breaker.failure()
            raise
        self.breaker.success()
        return n

    async def check(self, request: StoreCheck) -> CheckReply:
        """Run check.lua for ``request``, in its key's account's slot.

        A key not seen yet costs one more round trip, to its directory entry, which also holds
        the tier the key was issued on. Only the key's tier goes to Redis, as this process last
        saw it: a key whose tier changed costs one more round trip (check.lua answers
        TIER_CHANGED with the record's tier, having changed nothing, and the check is sent
        again with that tier's values, from the table in force now)."""
        known = self.keys.get(request.key_id)
        if known is None:
            known = await self._locate(request.key_id)
            if known is None:
                return NO_KEY
        out = await self._run_script(request, known, known.tier)
        if out.code is not Code.TIER_CHANGED:
            return out
        known.tier = out.tier
        out = await self._run_script(request, known, out.tier)
        if out.code is Code.TIER_CHANGED:  # changed again within one round trip
            raise StoreUnavailable(f"the tier of key {request.key_id} changed during the check")
        return out

    async def _locate(self, key_id: str) -> KnownKey | None:
        """The key's account, issued tier and external id from its directory entry,
        remembered; None if there is no such key."""
        name = schema.key_directory(key_id)
        reply = await self._call(("HMGET", name, "account", "tier", "external_id", "key_id"))
        if not isinstance(reply, list) or len(reply) != 4:
            raise StoreUnavailable(f"unexpected reply to a key lookup: {reply!r}")
        account, tier, external_id, own_id = reply
        if not account:
            return None
        known = KnownKey(str(account), str(tier or ""), str(external_id or ""), str(own_id or ""))
        self.keys[key_id] = known
        if known.own_id:  # the servicer names the key by its own id from now on
            self.keys[known.own_id] = known
        return known

    async def _run_script(self, r: StoreCheck, known: KnownKey, tier: str) -> CheckReply:
        if not self.breaker.allow():
            raise StoreUnavailable("circuit breaker open")
        now = self.clock.now_ms()
        keys = schema.check_keys(known.own_id or r.key_id, known.account, r.settlement)
        # ARGV[9], the deadline, is filled in when the pipeline is sent (_dated).
        command = (
            "EVALSHA",
            self._sha,
            len(keys),
            *keys,
            r.digest,
            "" if now is None else str(now),
            str(r.cost),
            self._window,
            self._period,
            str(r.spent),
            str(r.returned),
            r.call.value,
            "",
            *r.tier_args(tier),
            r.slot,
            self._slot_ms,
        )
        reply = await self._call(command)
        try:
            out = CheckReply.parse(reply)
        except (ValueError, TypeError, IndexError) as exc:
            raise StoreUnavailable(f"unexpected reply from check.lua: {exc}") from exc
        if out.code is Code.EXPIRED:
            self.breaker.failure()
            raise StoreUnavailable("Redis ran the check after its deadline; nothing was counted")
        return out

    async def _call(self, command: tuple[Any, ...]) -> Any:
        """Queue one command for the next pipeline; its reply."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            self._since = loop.time()  # the deadline runs from the oldest waiting check
            if self._out is None:
                loop.call_soon(self._flush)
        self._pending.append((command, fut))
        return await fut

    def _flush(self) -> None:
        if not self._pending or self._out is not None:
            return
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        self._out = asyncio.get_running_loop().create_task(self._run(batch, self._since))
        self._out.add_done_callback(self._done)

    def _done(self, _: asyncio.Task[None]) -> None:
        self._out = None
        self._flush()  # what queued up while the pipeline was out goes now, together

    async def _run(self, batch: list[Queued], since: float) -> None:
        try:
            async with asyncio.timeout_at(since + self.deadline_s):
                replies = await self._send([cmd for cmd, _ in batch])
        except TimeoutError as exc:  # builtin: our deadline (redis-py raises its own TimeoutError)
            if self.breaker.probing:
                self.breaker.failure()  # a probe must resolve, or the breaker stays half-open
            self._fail(batch, Overloaded(f"check took over {self.deadline_s * 1000:.0f} ms"), exc)
            return
        except Exception as exc:  # the pipe's StoreConnectionError (nothing sent), or a bug
            self.breaker.failure()
            self._fail(batch, StoreUnavailable(f"{type(exc).__name__}: {exc}"), exc)
            return
        except BaseException as exc:  # cancelled at shutdown: nobody waits for good news
            if self.breaker.probing:
                self.breaker.failure()  # a probe must always resolve, or the breaker sticks
            self._fail(batch, StoreUnavailable(f"{type(exc).__name__}: {exc}"), exc)
            raise
        # An error reply, or on a cluster a node's timeout or dropped connection, comes back in
        # place of its command's reply.
        if any(isinstance(r, Exception) for r in replies):
            self.breaker.failure()
            lost = sum(isinstance(r, ReplyLost) for r in replies)
            if lost:
                self._on_reply_lost(lost)  # refused, and possibly counted by Redis
        else:
            self.breaker.success()
        # Redis's clock, once a pipeline, not once a check: from the pipeline's last full
        # check reply, whose TIME was read last and so is the least delayed sample of them.
        for reply in reversed(replies):
            if type(reply) is list and len(reply) >= 11:
                self.redis_clock.learn(int(reply[9]))
                break
        for (_, fut), reply in zip(batch, replies, strict=True):
            if fut.done():
                continue
            if isinstance(reply, Exception):
                error = StoreUnavailable(f"{type(reply).__name__}: {reply}")
                error.__cause__ = reply
                fut.set_exception(error)
            else:
                fut.set_result(reply)

    async def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One pipeline; a NOSCRIPT reply (restart, SCRIPT FLUSH, failover) loads the script
        and sends those commands once more."""
        replies = await self._pipeline(commands)
        missing = [i for i, r in enumerate(replies) if is_noscript(r)]
        if missing:
            await self.pipe.script_load(self._script)
            again = await self._pipeline([commands[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    @staticmethod
    def _dated(cmd: tuple[Any, ...], deadline: str) -> tuple[Any, ...]:
        """The command with its deadline (ARGV[9]) set."""
        if not deadline or cmd[0] != "EVALSHA":
            return cmd  # off, or a key lookup (it changes nothing)
        at = 11 + cmd[2]  # "EVALSHA", sha, numkeys, *keys, then ARGV[1..]: ARGV[9] is here
        if cmd[at - 1] == ScriptCall.SETTLE.value:
            return cmd  # a settle-only call (idempotent, so a late run is harmless)
        return (*cmd[:at], deadline, *cmd[at + 1 :])

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self._on_pipeline()
        # One deadline for the whole pipeline, dated from the moment it is sent.
        deadline = (
            "" if self.expire_after_ms is None else self.redis_clock.deadline(self.expire_after_ms)
        )
        return await self.pipe.execute([self._dated(cmd, deadline) for cmd in commands])

    @staticmethod
    def _fail(batch: list[Queued], error: Exception, cause: BaseException) -> None:
        error.__cause__ = cause
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(error)
