"""The API key format: generation, offline validation, and hashing.

A key reads ``tw_live_<body><check>`` (or ``tw_test_``): ``body`` is 32 random bytes in base62,
always 43 characters; ``check`` is the CRC32 of prefix and body in base62, always 6 characters.
The checksum lets authz reject a typo or a guessed key without touching Redis.

Only ``key_digest`` (SHA-256, or HMAC-SHA256 with the server pepper) is ever stored. ``key_id``,
the first 16 hex digits of that digest, names the key in Redis, logs and headers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass
from enum import StrEnum

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_BYTES = 32
BODY_LEN = 43  # ceil(256 / log2(62))
CHECK_LEN = 6  # 62**6 > 2**32
KEY_ID_LEN = 16


class KeyMode(StrEnum):
    LIVE = "live"
    TEST = "test"


PREFIXES = {f"tw_{m.value}_": m for m in KeyMode}
PREFIX_LEN = 8
KEY_LEN = PREFIX_LEN + BODY_LEN + CHECK_LEN


def b62encode(n: int, width: int) -> str:
    """``n`` in base62, left-padded with ``0`` to ``width`` characters."""
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(ALPHABET[r])
    return "".join(reversed(out)).rjust(width, "0")


def _checksum(prefix_and_body: str) -> str:
    return b62encode(zlib.crc32(prefix_and_body.encode("ascii")), CHECK_LEN)


def new_customer_id() -> str:
    """An id for a customer tollway makes itself (not Stripe's): a key issued without one."""
    return f"local_{secrets.token_hex(8)}"


def generate_key(mode: KeyMode = KeyMode.LIVE) -> str:
    """A new random key in the tollway format."""
    body = b62encode(int.from_bytes(secrets.token_bytes(BODY_BYTES), "big"), BODY_LEN)
    head = f"tw_{mode.value}_{body}"
    return head + _checksum(head)


# The whole shape in one C-speed match, not a check per character: it runs on every request.
_SHAPE = re.compile(rf"tw_(?:live|test)_[0-9A-Za-z]{{{BODY_LEN + CHECK_LEN}}}")


def parse_key(candidate: str) -> KeyMode | None:
    """The key's mode if ``candidate`` is well-formed with a valid checksum, else ``None``."""
    if len(candidate) != KEY_LEN or _SHAPE.fullmatch(candidate) is None:
        return None
    head, check = candidate[:-CHECK_LEN], candidate[-CHECK_LEN:]
    if not hmac.compare_digest(_checksum(head), check):
        return None
    return PREFIXES[candidate[:PREFIX_LEN]]


@dataclass(frozen=True)
class KeyHasher:
    """Hashes keys; with a pepper, HMAC-SHA256 so a leaked store cannot be brute-forced offline."""

    pepper: bytes = b""

    def digest(self, key: str) -> str:
        raw = key.encode("ascii")
        if self.pepper:
            return hmac.new(self.pepper, raw, hashlib.sha256).hexdigest()
        return hashlib.sha256(raw).hexdigest()

    @staticmethod
    def key_id(digest: str) -> str:
        return digest[:KEY_ID_LEN]


def looks_like_key_id(value: str) -> bool:
    return len(value) == KEY_ID_LEN and all(c in "0123456789abcdef" for c in value)
