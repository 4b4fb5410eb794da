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


def test_full_it_forgets_its_oldest_eighth_at_once():
    """One eviction at a time made each write scan past every slot deleted before it (18 µs
    a write at 100,000 entries: make bench row 6); in eighths the scan is paid once a batch."""
    m: BoundedMap[int, int] = BoundedMap(80)
    m.update({i: i for i in range(80)})
    m[80] = 80
    assert len(m) == 71 and min(m) == 10 and 80 in m
    m.update({i: i for i in range(81, 90)})  # room again until full: nothing more goes
    assert len(m) == 80 and min(m) == 10
