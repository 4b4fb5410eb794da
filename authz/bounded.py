"""A dict that holds at most ``limit`` entries: past it, the oldest written go first.

Every memory authz keeps of what strangers send (presented keys, digests, key ids) is one of
these, so no input can grow a process without bound. A ``dict`` subclass, so that a read on
the check path is the C ``dict.get`` (an ``OrderedDict`` or an LRU wrapper costs a Python call
per read); only a write is Python. Insertion order, not use: an entry read often is evicted
as soon as one read never, which costs at most one extra Redis round trip, never a wrong
answer, for the caches here.

Full, it forgets its oldest eighth at once. One at a time, each eviction cost a scan past
every entry deleted before it (a dict keeps their slots until it resizes): 18 µs a write at
100,000 entries against 1 µs at 1,000 (make bench row 6, each request a key not remembered),
and a stranger presenting new keys could buy that on every request. In batches a write costs
O(1) amortized, whatever the limit.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMap(dict[K, V]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError("a bounded map holds at least one entry")
        self.limit = limit
        self._batch = max(1, limit // 8)  # forgotten at once when full

    def __setitem__(self, key: K, value: V) -> None:
        if len(self) >= self.limit and key not in self:
            for old in list(islice(self, self._batch)):
                del self[old]
        dict.__setitem__(self, key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: K, default: V) -> V:
        if key not in self:
            self[key] = default
        return self[key]
