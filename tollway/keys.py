"""The API key format: generation, offline validation, and hashing.

A key reads ``tw_live_<body><check>`` (or ``tw_test_``): ``body`` is 32 random bytes in base62,
always 43 characters; ``check`` is the CRC32 of prefix and body in base62, always 6 characters.
The checksum lets authz reject a typo or a guessed key without touching Redis.

Only ``key_digest`` (SHA-256, or HMAC-SHA256 with the server pepper) is ever stored. ``key_id``,
the first 16 hex digits of that digest, names the key in Redis, logs and headers.

The pepper rotates (``TOLLWAY_KEY_PEPPER``: the pepper in force, then earlier ones): a key
issued under an earlier pepper is found under it and moved to the one in force the first time
it is presented (tollway/key_store.py), and keeps the key id it was issued with.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tollway.settings import RedisSettings

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
    """Hashes keys; with a pepper, HMAC-SHA256 so a leaked store cannot be brute-forced offline.

    ``pepper`` is the one in force: new keys, and keys moved off an earlier pepper, are hashed
    with it. ``earlier``: peppers keys were issued under before, newest first, still honoured
    (b"" for plain SHA-256, before any pepper was set)."""

    pepper: bytes = b""
    earlier: tuple[bytes, ...] = ()

    @classmethod
    def configured(cls, settings: RedisSettings) -> KeyHasher:
        pepper, *earlier = settings.key_peppers or (b"",)
        return cls(pepper, tuple(earlier))

    def digest(self, key: str) -> str:
        return peppered(key, self.pepper)

    def earlier_digests(self, key: str) -> list[str]:
        """``key``'s digest under each earlier pepper, newest first."""
        return [peppered(key, p) for p in self.earlier]

    @property
    def peppers(self) -> tuple[bytes, ...]:
        """Every pepper honoured, the one in force first (what text sealed with one opens
        with: tollway/sealing.py)."""
        return (self.pepper, *self.earlier)

    @property
    def fingerprint(self) -> str:
        """Names the pepper in force without revealing it: a record holds it beside its digest,
        so that ``tollway keys peppers`` can count the keys still under an earlier one."""
        return pepper_fingerprint(self.pepper)

    @staticmethod
    def key_id(digest: str) -> str:
        return digest[:KEY_ID_LEN]


def peppered(key: str, pepper: bytes) -> str:
    """``key``'s digest: HMAC-SHA256 with ``pepper``, or SHA-256 without one."""
    raw = key.encode("ascii")
    if pepper:
        return hmac.new(pepper, raw, hashlib.sha256).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def pepper_fingerprint(pepper: bytes) -> str:
    """8 hex digits naming a pepper (an HMAC of a fixed text under it; "plain" for none)."""
    if not pepper:
        return "plain"
    return hmac.new(pepper, b"tollway key pepper", hashlib.sha256).hexdigest()[:8]


def looks_like_key_id(value: str) -> bool:
    return len(value) == KEY_ID_LEN and all(c in "0123456789abcdef" for c in value)
