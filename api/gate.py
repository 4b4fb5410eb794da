"""Who may call the management API, and how often: the operator token (401) and its rate
(429), checked before anything else a request asks.

Both go over the check engine's lean Redis client (``CheckEngine.commands``: hiredis over
asyncio.Protocol) rather than redis-py: ``make bench`` row 2b measured redis-py's two calls
at 38% of a verify's CPU. The rate is one counter per token for every API process
(count_in_window.lua, a fixed one-second window). Two ways to admit, by the operation:

- **exact** (every operation but verify): the token's record and its count in one round trip
  before the operation runs. A revoked token is refused on its next call, and no request
  past the rate runs.
- **hot** (verify, on its caller's hot path, where a second round trip would cost as much
  again as the check it carries): a token read within the last TOKEN_CACHE_S is taken as
  read, and its count goes to Redis without being waited for (the counts of one loop tick
  in one pipeline). So a token revoked elsewhere is refused within TOKEN_CACHE_S on every
  process. The rate holds in each process by itself (its own count of this second), and
  across processes from Redis's count: once a reply says the token is past its rate, every
  verify of it is refused for the rest of the second (OVER_S). A token may overshoot by what
  other processes let through within one round trip. A token not read lately (the first
  call, a forged one) is admitted exactly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from api.errors import ApiError
from authz.engine import CheckEngine
from tollway import schema, scripts
from tollway.api_tokens import ApiToken, ApiTokens, live
from tollway.logs import fields
from tollway.throttle import counter

log = logging.getLogger("tollway.api")

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tollway-api"'}
WINDOW_S = 1  # the rate's window (count_in_window.lua's ARGV[1])
TOKEN_CACHE_S = 1.0  # a hot admission trusts a token's record read this recently
OVER_S = 1.0  # refused this long once Redis reports a token past its rate
MAX_KNOWN = 10_000  # tokens remembered per process (live ones only: the operator makes them)


@dataclass(slots=True)
class _Known:
    """A live token as lately read, and its rate as this process sees it."""

    token: ApiToken
    digest: str  # of the token as presented when it was read
    read_at: float
    since: float = 0.0  # when this process's current window began
    n: int = 0  # hot admissions in it
    over_until: float = 0.0  # Redis said the token is past its rate: refused until then


class Gate:
    def __init__(
        self,
        engine: CheckEngine,
        tokens: ApiTokens,
        per_token: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.tokens = tokens
        self.per_token = per_token
        self.clock = clock
        self._known: dict[str, _Known] = {}  # by token id
        self._unsent: dict[str, int] = {}  # hot admissions not yet counted in Redis, by id
        self._reports: set[asyncio.Task[None]] = set()

    async def admit(self, authorization: str, hot: bool = False) -> ApiToken:
        """The live token an ``Authorization: Bearer`` header carries, counted. Raises
        ApiError: 401 without a live token, 429 past its rate."""
        scheme, _, presented = authorization.partition(" ")
        found = self.tokens.lookup(presented.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise _unauthorized()
        token_id, digest = found
        if hot:
            known = self._known.get(token_id)
            if known is not None and known.digest == digest and self._fresh(known):
                return self._admit_hot(known)
        token, n = await self._read(token_id, digest)
        if token is None:  # made under an earlier key pepper, if one is listed
            for token_id, digest in self.tokens.earlier_lookups(presented.strip()):
                token, n = await self._read(token_id, digest)
                if token is not None:
                    break
            else:
                raise _unauthorized()
        if hot:
            self._remember(token, digest, over=int(n) > self.per_token)
        if int(n) > self.per_token:
            raise _rate_limited(self.per_token)
        return token

    async def _read(self, token_id: str, digest: str) -> tuple[ApiToken | None, int]:
        """One round trip: the live token whose record is under ``token_id`` and holds
        ``digest`` (None if none), and the count under that id. (A forged token counts under
        an id of its own, which no live token has.)"""
        flat, n = await self.engine.commands(
            ("HGETALL", schema.api_token(token_id)),
            scripts.call("count_in_window", [counter("api", token_id)], [str(WINDOW_S)]),
        )
        return live(token_id, digest, dict(zip(flat[::2], flat[1::2], strict=True))), int(n)

    def _fresh(self, known: _Known) -> bool:
        return self.clock() - known.read_at < TOKEN_CACHE_S

    def _admit_hot(self, known: _Known) -> ApiToken:
        now = self.clock()
        if now - known.since >= WINDOW_S:
            known.since, known.n = now, 0
        if now < known.over_until or known.n >= self.per_token:
            raise _rate_limited(self.per_token)
        known.n += 1
        token_id = known.token.id
        if not self._unsent:
            asyncio.get_running_loop().call_soon(self._send)
        self._unsent[token_id] = self._unsent.get(token_id, 0) + 1
        return known.token

    def _remember(self, token: ApiToken, digest: str, over: bool) -> None:
        if len(self._known) >= MAX_KNOWN:
            self._known.clear()
        known = self._known.get(token.id)
        now = self.clock()
        if known is None or known.digest != digest:
            known = self._known[token.id] = _Known(token, digest, now, since=now)
        known.token, known.read_at = token, now
        known.n += 1
        if over:
            known.over_until = now + OVER_S

    def _send(self) -> None:
        """This tick's hot admissions, counted in Redis in one pipeline."""
        counts, self._unsent = self._unsent, {}
        task = asyncio.ensure_future(self._report(counts))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _report(self, counts: dict[str, int]) -> None:
        ids = list(counts)
        commands = [
            scripts.call("count_in_window", [counter("api", i)], [str(WINDOW_S), str(counts[i])])
            for i in ids
        ]
        try:
            replies = await self.engine.commands(*commands)
        except Exception as exc:  # Redis is away: verify itself answers 503 meanwhile
            log.warning("token_rate_not_counted", extra=fields(error=repr(exc)))
            return
        for token_id, n in zip(ids, replies, strict=True):
            known = self._known.get(token_id)
            if known is not None and int(n) > self.per_token:
                known.over_until = self.clock() + OVER_S


def _unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "send a live API token: Authorization: Bearer twa_…")


def _rate_limited(per_token: int) -> ApiError:
    return ApiError(429, "rate_limited", f"over {per_token} requests per second")
