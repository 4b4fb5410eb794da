"""A dict that holds at most ``limit`` entries: past it, the oldest written goes first.

Every memory authz keeps of what strangers send (presented keys, digests, key ids) is one of
these, so no input can grow a process without bound. A ``dict`` subclass, so that a read on
the check path is the C ``dict.get`` (an ``OrderedDict`` or an LRU wrapper costs a Python call
per read); only a write is Python. Insertion order, not use: an entry read often is evicted
as soon as one read never, which costs at most one extra Redis round trip, never a wrong
answer, for the caches here.
"""

from __future__ import annotations

from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMap(dict[K, V]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError("a bounded map holds at least one entry")
        self.limit = limit

    def __setitem__(self, key: K, value: V) -> None:
        if len(self) >= self.limit and key not in self:
            del self[next(iter(self))]
        dict.__setitem__(self, key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: K, default: V) -> V:
        if key not in self:
            self[key] = default
        return self[key]
