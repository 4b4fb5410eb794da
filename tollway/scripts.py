"""The Lua scripts tollway runs, loaded from the .lua files beside this module.

``register(client, name)`` returns redis-py's script object: it calls EVALSHA and, after a
NoScriptError (a restart or SCRIPT FLUSH emptied the cache), loads the script and retries.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).parent / "lua"


@cache
def source(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")


def register(client: Any, name: str) -> Any:
    """Register script ``name`` (``check``, ``create_record``, ``set_status``) with a redis.asyncio client."""
    return client.register_script(source(name))


def sha1(text: str) -> str:
    """The SHA1 digest Redis names a script by (what EVALSHA takes)."""
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()
