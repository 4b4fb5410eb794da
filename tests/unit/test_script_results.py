"""Lua and Python read script answers from one table: every outcome a script returns is a
name from ``scripts.Result`` (check.lua's codes are ``check_reply.Code``), never a bare number
that Python would have to decode by hand."""

from __future__ import annotations

import re

import pytest

from authz.check_reply import Code
from tollway import scripts
from tollway.scripts import LUA_DIR, Result

# A returned outcome: "return X" or "return {X, ..." where X is a number or a NAME.
RETURNED = re.compile(r"\breturn\s+\{?\s*(-?\d+|[A-Z_]+)\b")
# Scripts that return a count (a number of requests), where 0 is a count, not an outcome.
COUNTS = {"usage_ack"}
NAMES = sorted(p.stem for p in LUA_DIR.glob("*.lua") if p.stem != "check")


@pytest.mark.parametrize("name", NAMES)
def test_a_script_returns_outcomes_by_name_from_the_shared_table(name):
    returned = RETURNED.findall((LUA_DIR / f"{name}.lua").read_text())
    numbers = [r for r in returned if not r.isalpha() and "_" not in r]
    if name in COUNTS:
        numbers = [n for n in numbers if n != "0"]
    assert numbers == [], f"{name}.lua returns bare numbers {numbers}: use a Result name"
    unknown = {r for r in returned if r.isupper() and r not in Result.__members__}
    assert unknown == set(), f"{name}.lua returns {unknown}, which are not in scripts.Result"


def test_every_script_but_check_is_loaded_with_the_table():
    """The Lua constants are the enum's own values, so the two cannot drift."""
    line = scripts.lua("update_key").splitlines()[0]
    assert line == scripts.RESULTS_LUA.strip()
    names, values = line.removeprefix("local ").split(" = ")
    assert dict(zip(names.split(", "), map(int, values.split(", ")), strict=True)) == {
        r.name: r.value for r in Result
    }
    assert not scripts.lua("check").startswith("local DONE")


def test_check_lua_codes_are_authz_codes():
    """check_reply.Code mirrors the constants at the top of check.lua, name for name."""
    text = scripts.lua("check")
    declared: dict[str, int] = {}
    for names, values in re.findall(r"^local ([A-Z_, ]+) = ([\d, ]+)$", text, re.M):
        declared.update(zip(names.split(", "), map(int, values.split(", ")), strict=True))
    declared.pop("TIER")  # the index of the tier's first argument, not a code
    assert declared == {c.name: c.value for c in Code}
