"""The negative cache: misses are remembered for a while, and the cache stays bounded."""

from __future__ import annotations

from authz.negatives import NegativeCache


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_miss_is_remembered_until_its_ttl():
    clock = Clock()
    cache = NegativeCache(ttl_s=60, now=clock)
    cache.add("d1")
    assert "d1" in cache and "d2" not in cache
    clock.t = 59.9
    assert "d1" in cache
    clock.t = 60.0
    assert "d1" not in cache and len(cache) == 0


def test_the_oldest_entries_go_first_past_the_bound():
    cache = NegativeCache(max_entries=3, now=Clock())
    for d in ("a", "b", "c"):
        cache.add(d)
    cache.add("a")  # refreshed: now the youngest
    cache.add("d")
    assert [d in cache for d in "abcd"] == [True, False, True, True]
    assert len(cache) == 3
