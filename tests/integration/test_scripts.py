"""The one way the services run Lua (tollway.scripts.run_many), on one Redis and on a Cluster:
replies in order, and a Redis that lost its scripts gets them again."""

from __future__ import annotations

import pytest

from tollway import schema, scripts

pytestmark = pytest.mark.integration


async def test_run_many_answers_in_order_and_survives_a_script_flush(redis):
    """usage_add.lua for 100 writes over 100 slots, twice: the repeat is refused write by
    write (each id applied once); after SCRIPT FLUSH on every node, new writes still apply."""
    script = scripts.register(redis, "usage_add")
    calls = [((schema.usage(f"acct{i}"), schema.applied_marker(f"acct{i}", "w1")),
              ("60", str(i + 1), "60")) for i in range(100)]  # fmt: skip
    assert await scripts.run_many(script, calls, width=16) == [1] * 100
    assert await scripts.run_many(script, calls, width=16) == [0] * 100
    await redis.script_flush()
    again = [((keys[0], schema.applied_marker(schema.tag_of(keys[0]), "w2")), args)
             for keys, args in calls]  # fmt: skip
    assert await scripts.run_many(script, again) == [1] * 100
    assert [int(await redis.hget(schema.usage(f"acct{i}"), "60")) for i in (0, 99)] == [2, 200]
