"""The bounded map every authz memory is: never more than its limit, the oldest written out."""

from __future__ import annotations

import pytest

from authz.bounded import BoundedMap


def test_past_its_limit_the_oldest_entry_goes_first():
    m: BoundedMap[str, int] = BoundedMap(3)
    for i, k in enumerate("abcd"):
        m[k] = i
    assert list(m) == ["b", "c", "d"]
    m["b"] = 9  # rewriting an entry evicts nothing
    assert dict(m) == {"b": 9, "c": 2, "d": 3}


def test_every_way_to_write_is_bounded():
    m: BoundedMap[int, int] = BoundedMap(2)
    m.update({i: i for i in range(10)})
    m.setdefault(10, 10)
    assert dict(m) == {9: 9, 10: 10}


def test_a_map_holds_at_least_one_entry():
    with pytest.raises(ValueError, match="at least one"):
        BoundedMap(0)
