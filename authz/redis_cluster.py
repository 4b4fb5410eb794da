"""The check path's lean client on a Redis Cluster: one ``RedisNode`` per primary, each command
routed by the slot of its first key.

- Every key a check touches carries the key's ``{hash tag}`` (tollway.schema), so each
  EVALSHA has one slot; the slot is redis-py's ``key_slot`` (CRC16 of the tag).
- The slot map comes from ``CLUSTER SLOTS``, asked of any known node (then the seeds). It is
  loaded before the first pipeline, and refreshed in the background, at most every
  ``REFRESH_MIN_INTERVAL_S``, whenever a node fails or answers MOVED.
- ``MOVED slot host:port`` moves that slot at once and the command is sent there; ``ASK`` sends
  ``ASKING`` and the command to the node named, for that command only. A command follows at
  most ``MAX_REDIRECTS`` redirections, then its error reply is its answer.
- ``TRYAGAIN`` (a multi-key script on a slot whose keys are half migrated: Redis ran nothing)
  is sent again to the same node after 10, 20, then 40 ms, within those hops; by then the
  keys have usually moved and the node answers MOVED or ASK.
- A node that fails (cannot be reached, times out, drops its connection) fails only the
  commands routed to it: their places hold the exception, as error replies do. Nothing is
  sent twice after a failure, since the node may have run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from redis.crc import key_slot

from authz.redis_node import RedisNode, ReplyError, ReplyLost, StoreConnectionError

log = logging.getLogger("tollway.authz")

SLOTS = 16384
MAX_REDIRECTS = 3
# TRYAGAIN (a multi-key command on a slot whose keys are half migrated; nothing was run):
# sent again after this, doubling, within the same MAX_REDIRECTS hops.
TRYAGAIN_DELAY_S = 0.01
REFRESH_MIN_INTERVAL_S = 0.1


def slot_of(command: tuple[Any, ...]) -> int:
    """The slot of an EVAL/EVALSHA's first key (``cmd, script, numkeys, key1, ...``), or of a
    plain command's key (``cmd, key, ...``)."""
    if command[0] not in ("EVALSHA", "EVAL"):
        key = command[1] if len(command) > 1 else ""
    else:
        key = command[3] if len(command) > 3 and int(command[2]) > 0 else ""
    return int(key_slot(key.encode() if isinstance(key, str) else key))


def is_tryagain(reply: Any) -> bool:
    return isinstance(reply, ReplyError) and str(reply).startswith("TRYAGAIN")


def redirect(reply: Any) -> tuple[str, int, str] | None:
    """("MOVED" | "ASK", slot, "host:port") for a redirection reply, else None."""
    if not isinstance(reply, ReplyError):
        return None
    parts = str(reply).split()
    if len(parts) == 3 and parts[0] in ("MOVED", "ASK") and parts[1].isdigit():
        return parts[0], int(parts[1]), parts[2]
    return None


class RedisClusterPipe:
    def __init__(
        self,
        seeds: list[tuple[str, int]],
        timeout_s: float | None,
        password: str | None = None,
        username: str | None = None,
    ) -> None:
        self.seeds = seeds
        self.timeout_s = timeout_s
        self.password, self.username = password, username
        self.nodes: dict[str, RedisNode] = {}
        self._slots: list[str | None] = [None] * SLOTS
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed_at = float("-inf")
        self.refreshes = 0  # maps loaded, for tests and logs
        self.tryagains = 0  # TRYAGAIN replies sent again, for tests

    def node(self, address: str) -> RedisNode:
        if address not in self.nodes:
            host, _, port = address.rpartition(":")
            self.nodes[address] = RedisNode(
                host, int(port), self.timeout_s, self.password, self.username
            )
        return self.nodes[address]

    # -- the slot map --------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Load the slot map now (single flight: callers share one refresh)."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(self._load_map())
        await asyncio.shield(self._refresh)

    def refresh_soon(self) -> None:
        """Refresh in the background, unless one ran within REFRESH_MIN_INTERVAL_S."""
        loop = asyncio.get_running_loop()
        if self._refresh is not None and not self._refresh.done():
            return
        if loop.time() - self._refreshed_at < REFRESH_MIN_INTERVAL_S:
            return
        self._refresh = loop.create_task(self._load_map())
        self._refresh.add_done_callback(_log_failure)

    async def _load_map(self) -> None:
        self._refreshed_at = asyncio.get_running_loop().time()
        serving = set(self._slots)
        known = [a for a in self.nodes if a in serving]
        random.shuffle(known)
        candidates = known + [f"{h}:{p}" for h, p in self.seeds]
        errors = []
        for address in dict.fromkeys(candidates):
            try:
                (reply,) = await self.node(address).execute([("CLUSTER", "SLOTS")])
            except Exception as exc:
                errors.append(f"{address}: {exc}")
                continue
            if isinstance(reply, ReplyError) or not reply:
                errors.append(f"{address}: {reply or 'no slots'}")
                continue
            self._apply(reply, address)
            return
        raise StoreConnectionError("no cluster node gave a slot map: " + "; ".join(errors))

    def _apply(self, reply: list[Any], asked: str) -> None:
        slots: list[str | None] = [None] * SLOTS
        for start, end, primary, *_ in reply:
            host = primary[0] or asked.rpartition(":")[0]
            address = f"{host}:{primary[1]}"
            self.node(address)
            slots[int(start) : int(end) + 1] = [address] * (int(end) - int(start) + 1)
        self._slots = slots
        self.refreshes += 1
        serving = set(slots)
        for address in [a for a in self.nodes if a not in serving]:
            gone = self.nodes.pop(address)
            asyncio.get_running_loop().create_task(gone.aclose())

    # -- pipelines -----------------------------------------------------------------------------
    async def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Each command on its slot's primary; replies in order. A command whose node failed
        holds that exception; one redirected too often holds its last redirection."""
        if not self.refreshes:
            await self.refresh()
        replies: list[Any] = [None] * len(commands)
        # (index, node address, asking)
        todo = [(i, self._slots[slot_of(c)], False) for i, c in enumerate(commands)]
        delay = 0.0
        for hop in range(MAX_REDIRECTS + 1):
            if delay:
                await asyncio.sleep(delay)
                delay = 0.0
            groups: dict[str | None, list[tuple[int, bool]]] = {}
            for i, address, asking in todo:
                groups.setdefault(address, []).append((i, asking))
            sent = [self._send(address, group, commands) for address, group in groups.items()]
            todo = []
            for (address, group), result in zip(
                groups.items(), await asyncio.gather(*sent), strict=True
            ):
                for (i, asking), reply in zip(group, result, strict=True):
                    replies[i] = reply
                    if hop < MAX_REDIRECTS and is_tryagain(reply):
                        self.tryagains += 1
                        todo.append((i, address, asking))
                        delay = TRYAGAIN_DELAY_S * 2**hop
                        continue
                    moved = redirect(reply) if hop < MAX_REDIRECTS else None
                    if moved is None:
                        continue
                    kind, slot, target = moved  # not ``address``: the group's is still needed
                    if kind == "MOVED":
                        self._slots[slot] = target
                        self.refresh_soon()
                    todo.append((i, target, kind == "ASK"))
            if not todo:
                break
        return replies

    async def _send(
        self, address: str | None, group: list[tuple[int, bool]], commands: list[tuple[Any, ...]]
    ) -> list[Any]:
        """One node's share of a pipeline: its replies, or the node's failure in each place."""
        if address is None:
            self.refresh_soon()
            return [StoreConnectionError("no node serves this slot yet")] * len(group)
        batch: list[tuple[Any, ...]] = []
        for i, asking in group:
            if asking:
                batch.append(("ASKING",))
            batch.append(commands[i])
        try:
            out = await self.node(address).execute(batch)
        except Exception as exc:  # nothing was sent
            self.refresh_soon()
            return [exc] * len(group)
        if any(isinstance(r, ReplyLost) for r in out):
            self.refresh_soon()  # the node broke mid-pipeline: it may be gone for good
        if len(batch) == len(group):
            return out
        replies, at = [], 0
        for _, asking in group:
            at += 1 if asking else 0  # skip ASKING's +OK
            replies.append(out[at])
            at += 1
        return replies

    async def script_load(self, source: str) -> None:
        """Load the script on every primary (a failover may have brought one without it),
        learning the slot map first if there is none yet (a worker warming up)."""
        if all(a is None for a in self._slots):
            await self.refresh()
        primaries = {a for a in self._slots if a is not None}
        results = await asyncio.gather(
            *(self.node(a).execute([("SCRIPT", "LOAD", source)]) for a in primaries),
            return_exceptions=True,
        )
        if results and all(isinstance(r, BaseException) for r in results):
            raise StoreConnectionError(f"SCRIPT LOAD failed on every primary: {results[0]}")

    async def aclose(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(BaseException):
                await self._refresh
        for node in self.nodes.values():
            await node.aclose()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("slot map refresh failed: %s", task.exception())
