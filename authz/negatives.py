"""Remember keys Redis did not know, so a flood of invalid keys does not reach Redis each time.

Key format and checksum are checked before any lookup (tollway.keys.parse_key), so random
guesses never get this far. A well-formed key that Redis does not know is remembered here by
digest for ``ttl_s``: repeating it costs no Redis call. Keys are never deleted, only revoked,
and a new key's digest has never been presented before it was issued, so a remembered miss
cannot hide a real key. Bounded: past ``max_entries`` the oldest entries go first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from authz.bounded import BoundedMap

DEFAULT_TTL_S = 60.0
DEFAULT_MAX_ENTRIES = 100_000


class NegativeCache:
    def __init__(
        self,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._now = now
        self._until: BoundedMap[str, float] = BoundedMap(max_entries)  # digest -> expiry

    def __len__(self) -> int:
        return len(self._until)

    def __contains__(self, digest: str) -> bool:
        until = self._until.get(digest)
        if until is None:
            return False
        if self._now() < until:
            return True
        del self._until[digest]
        return False

    def add(self, digest: str) -> None:
        self._until.pop(digest, None)  # re-adding moves it to the young end
        self._until[digest] = self._now() + self.ttl_s
