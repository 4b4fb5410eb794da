"""The Lua scripts tollway runs, and the one way the services run them.

``register(client, name)`` returns redis-py's registered script: calling it runs EVALSHA and,
after a NoScriptError (a restart, a failover or SCRIPT FLUSH emptied Redis's script cache),
loads the script and runs it again. ``run_many`` runs one script for many calls in one
pipeline of EVALSHA commands (split by node on a Redis Cluster), reloading it if Redis lost it.

authz's check path is the one exception: it runs check.lua over its own lean client
(authz/redis_pipe.py), not redis-py, and reloads on a NOSCRIPT reply itself
(authz/redis_check_store.py). It takes the script's text and SHA1 from here.

A script that answers an outcome answers a ``Result``: every script but check.lua is loaded
with the table below as Lua constants of the same names, so Lua and Python share one table.
(check.lua answers ``authz.check_reply.Code``, a table of its own, tested against it.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from enum import IntEnum
from functools import cache
from pathlib import Path
from typing import Any

from redis.exceptions import NoScriptError

LUA_DIR = Path(__file__).parent / "lua"
# Script calls sent in one pipeline by run_many.
PIPELINE_WIDTH = 1000

Call = tuple[Sequence[str], Sequence[str]]  # (KEYS, ARGV)


class Result(IntEnum):
    """What a script that changes state answers, by name in Lua and in Python."""

    DONE = 1  # written, changed or applied
    ALREADY = 0  # nothing to do: it exists, or this write was applied before
    MISSING = -1  # no such record or account
    REVOKED = -2  # the key is revoked (final)
    EXPIRED = -3  # the key is past its expiry (final), or a claim past its window
    NEWER = -4  # the record holds a newer version than this write's
    ROTATED = -5  # the key was rotated already
    ACCOUNT_HELD = -6  # an operator has suspended the account
    TIER_CONFLICT = -7  # a customer account is on another tier
    NOT_HELD = -8  # a lock the caller does not hold
    MOVED_ON = -9  # the version the caller read has moved on: read again


# Every script but check.lua starts with the table as Lua locals (one line, so a Lua error's
# line number is one past the file's).
RESULTS_LUA = (
    f"local {', '.join(r.name for r in Result)} = {', '.join(str(r.value) for r in Result)}\n"
)


@cache
def lua(name: str) -> str:
    """The text of script ``name``, as Redis runs it."""
    text = (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    return text if name == "check" else RESULTS_LUA + text


def result(reply: Any) -> Result:
    """A script's reply (or a reply list's first item) as a Result."""
    return Result(int(reply[0] if isinstance(reply, list) else reply))


def register(client: Any, name: str) -> Any:
    """Script ``name`` (a file in lua/) registered with a redis.asyncio client."""
    return client.register_script(lua(name))


async def run_many(script: Any, calls: Sequence[Call], width: int = PIPELINE_WIDTH) -> list[Any]:
    """Run registered ``script`` once per (KEYS, ARGV) in ``calls``; the replies, in order.

    One pipeline of EVALSHA commands per ``width`` calls, on one Redis or a Cluster alike
    (redis-py's cluster pipeline sends each node its commands in one write); calls answered
    NOSCRIPT (a restart or SCRIPT FLUSH emptied the cache) are sent again once after the
    script is loaded on every primary. Raises the first other error Redis answers: the calls
    are idempotent or the caller retries them whole."""
    client = script.registered_client
    out: list[Any] = []
    for i in range(0, len(calls), width):
        out += await _evalsha_all(client, script, calls[i : i + width], reload=True)
    return out


async def _evalsha_all(client: Any, script: Any, calls: Sequence[Call], reload: bool) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        replies = list(await pipe.execute(raise_on_error=False))
    lost = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
    if lost and reload:
        await client.script_load(script.script)
        again = await _evalsha_all(client, script, [calls[i] for i in lost], reload=False)
        for i, reply in zip(lost, again, strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def call(name: str, keys: Sequence[str], args: Sequence[str]) -> tuple[Any, ...]:
    """Script ``name`` as one EVALSHA command, for a client that sends raw commands (authz's
    lean client); ``by_sha1`` finds its text again after a NOSCRIPT."""
    return ("EVALSHA", _sha1_of(name), len(keys), *keys, *args)


@cache
def _sha1_of(name: str) -> str:
    digest = sha1(lua(name))
    _BY_SHA1[digest] = name
    return digest


_BY_SHA1: dict[str, str] = {}


def by_sha1(digest: str) -> str:
    """The text of a script ``call`` made a command of. Raises KeyError for any other."""
    return lua(_BY_SHA1[digest])


def sha1(text: str) -> str:
    """The SHA1 digest Redis names a script by (what EVALSHA takes)."""
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()
