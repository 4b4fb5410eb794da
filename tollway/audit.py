"""The audit log: every change to a key or an account, who made it, and when.

One Redis stream (``schema.AUDIT``), written after each change by the one lifecycle
(tollway/lifecycle.py) and the account operations (tollway/accounts.py), so that no caller can
change a key without a line here. Each entry: when, the actor, the action, the target (a key
id or an account) and what changed. Actors: ``cli``, ``customer:<cus_…>`` (the portal, for a
signed-in customer), ``stripe:<evt_…>`` (the webhook service, for an event).

Bounded by length and by age, both settings (``TOLLWAY_AUDIT_MAX_ENTRIES``,
``TOLLWAY_AUDIT_MAX_AGE_DAYS``; ``AuditLog.configured``): each write trims the stream with
XADD's MAXLEN and MINID (approximate, so a trim costs Redis little). Best effort, by design: a change is made
and announced first, and a failure to record it is logged (``audit_write_failed``) beside the
change's own log line; it never undoes the change.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from tollway import schema
from tollway.clock import Clock, WallClock
from tollway.logs import fields
from tollway.settings import RedisSettings

log = logging.getLogger("tollway.audit")

DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_AGE_S = 90 * 86_400
# A filtered read looks at no more than this many entries, newest first: bounded work.
SCAN_MAX = 10_000


@dataclass(frozen=True)
class AuditEntry:
    id: str  # the stream entry id: its time in ms, then a sequence
    at: int  # epoch seconds
    actor: str
    action: str  # "created", "rotated", "revoked", "suspended", "resumed", "tier_set", ...
    target: str  # "key:<key id>" or "account:<account>"
    changes: dict[str, Any]

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "changes": self.changes,
        }


class AuditLog:
    def __init__(
        self,
        redis: Any,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_age_s: int = DEFAULT_MAX_AGE_S,
        clock: Clock | None = None,
    ) -> None:
        self.redis = redis
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.clock = clock or WallClock()

    @classmethod
    def configured(
        cls, redis: Any, settings: RedisSettings, clock: Clock | None = None
    ) -> AuditLog:
        """The audit log with the bounds ``settings`` give."""
        max_age_s = int(settings.audit_max_age_days * 86_400)
        return cls(redis, settings.audit_max_entries, max_age_s, clock)

    async def record(self, actor: str, action: str, target: str, **changes: Any) -> None:
        """Append one entry, trimming what is past the bounds. Never raises: see the module."""
        now = self.clock.now()
        entry = {
            "actor": actor,
            "action": action,
            "target": target,
            "changes": json.dumps(changes, sort_keys=True, default=str),
        }
        try:
            await self.redis.xadd(schema.AUDIT, entry, maxlen=self.max_entries, approximate=True)
            oldest = (now - self.max_age_s) * 1000
            await self.redis.xtrim(schema.AUDIT, minid=oldest, approximate=True)
        except (RedisError, RedisClusterException, OSError) as exc:
            log.error(
                "audit_write_failed",
                extra=fields(actor=actor, action=action, target=target, error=str(exc)),
            )

    async def entries(
        self,
        target: str = "",
        actor: str = "",
        since: int = 0,
        until: int = 0,
        limit: int = 100,
        before: str = "",
    ) -> list[AuditEntry]:
        """The newest ``limit`` entries matching every filter given (``since``/``until`` in
        epoch seconds; ``before``: only entries older than this entry id), newest first.
        Reads at most SCAN_MAX entries."""
        high = f"{until * 1000 + 999}" if until else "+"
        if before and _parts(before) == (0, 0):
            return []  # nothing is older than the first id there can be
        if before and (high == "+" or _older(before, high)):
            ms, seq = _parts(before)
            high = f"({ms}-{seq}"
        low = f"{since * 1000}" if since else "-"
        out: list[AuditEntry] = []
        read = 0
        while len(out) < limit and read < SCAN_MAX:
            batch = await self.redis.xrevrange(schema.AUDIT, max=high, min=low, count=500)
            if not batch:
                break
            for entry_id, raw in batch:
                read += 1
                e = _entry(entry_id, raw)
                if (not target or e.target == target) and (not actor or e.actor == actor):
                    out.append(e)
                    if len(out) >= limit:
                        break
            last = str(batch[-1][0])
            ms, seq = (int(x) for x in last.split("-"))
            high = f"{ms}-{seq - 1}" if seq else f"{ms - 1}"
            if ms == 0 and seq == 0:
                break
        return out


def _parts(entry_id: str) -> tuple[int, int]:
    """A stream id (or a time in ms, as the last id of that ms) as numbers."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 2**64 - 1)


def _older(entry_id: str, bound: str) -> bool:
    """Whether stream id ``entry_id`` sorts before ``bound`` (an id or a time in ms)."""
    return _parts(entry_id) < _parts(bound)


def _entry(entry_id: Any, raw: dict[Any, Any]) -> AuditEntry:
    text = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }
    eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    try:
        changes = json.loads(text.get("changes", "{}"))
    except ValueError:
        changes = {"unreadable": text.get("changes", "")[:200]}
    return AuditEntry(
        eid,
        int(eid.split("-")[0]) // 1000,
        text.get("actor", ""),
        text.get("action", ""),
        text.get("target", ""),
        changes,
    )
