"""Stopping loops whose client hides a cancellation (tollway/cancel.py)."""

from __future__ import annotations

import asyncio

import pytest

from tollway.cancel import reraise_if_cancelled, stop_tasks


async def swallowing_loop(calls: list[str], check: bool) -> None:
    """A loop like the eviction watch: its "Redis call" swallows a cancellation, as
    redis-py's reconnecting client may; then it sleeps."""
    while True:
        try:
            await asyncio.sleep(3600)  # the call
        except asyncio.CancelledError:
            calls.append("swallowed")
        if check:
            reraise_if_cancelled()
        await asyncio.sleep(3600)


@pytest.mark.parametrize("check", [True, False])
async def test_a_loop_that_swallowed_a_cancellation_still_stops(check):
    calls: list[str] = []
    task = asyncio.create_task(swallowing_loop(calls, check))
    await asyncio.sleep(0)
    assert await stop_tasks([task])
    assert task.cancelled() and calls == ["swallowed"]
