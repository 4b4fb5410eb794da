"""The lean cluster client's routing of one pipeline's replies, on fake nodes (no I/O)."""

from __future__ import annotations

import asyncio
from typing import Any

from authz.redis_cluster import SLOTS, RedisClusterPipe
from authz.redis_node import ReplyError


class FakeNode:
    def __init__(self, replies: list[list[Any]]) -> None:
        self.replies = replies  # what each call answers, in order
        self.got: list[list[tuple[Any, ...]]] = []

    async def execute(self, batch: list[tuple[Any, ...]]) -> list[Any]:
        self.got.append(batch)
        return self.replies.pop(0)


class Pipe(RedisClusterPipe):
    def __init__(self, nodes: dict[str, FakeNode]) -> None:
        super().__init__([("127.0.0.1", 1)], 1.0)
        self.fakes = nodes
        self.refreshes = 1  # a map is known: every slot on A
        self._slots = ["A:1"] * SLOTS
        self._refreshed_at = float("inf")  # no background refresh

    def node(self, address: str) -> Any:
        return self.fakes[address]


async def test_a_tryagain_after_a_redirect_in_the_same_group_goes_back_to_its_own_node():
    """Two commands on node A: the first is MOVED to B, the second answered TRYAGAIN. The
    second is sent again to A, not to B (the redirect's address must not leak into it)."""
    a = FakeNode([[ReplyError("MOVED 5 B:2"), ReplyError("TRYAGAIN keys moving")], ["two"]])
    b = FakeNode([["one"]])
    pipe = Pipe({"A:1": a, "B:2": b})
    one, two = ("GET", "k1"), ("GET", "k2")
    assert await asyncio.wait_for(pipe.execute([one, two]), 5) == ["one", "two"]
    assert b.got == [[one]] and a.got == [[one, two], [two]]
