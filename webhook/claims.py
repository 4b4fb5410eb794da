"""Seal a freshly issued key for its one claim, so Redis never holds it in plaintext.

The sealed form is the key XORed with a keystream of keyed BLAKE2b over the session id, with
the server pepper as the key. A Redis dump alone does not reveal the key; the claim (which
presents the session id) and the pepper together do. Without a pepper set, the sealing still
keeps the key out of plain sight but is only as secret as the session id.
"""

from __future__ import annotations

import hashlib

_DEFAULT = b"tollway-claim-v1"


def _stream(session_id: str, secret: bytes, n: int) -> bytes:
    key = hashlib.sha256(secret or _DEFAULT).digest()
    out = b""
    counter = 0
    while len(out) < n:
        h = hashlib.blake2b(f"{counter}:{session_id}".encode(), key=key, digest_size=64)
        out += h.digest()
        counter += 1
    return out[:n]


def seal(plaintext: str, session_id: str, secret: bytes) -> str:
    raw = plaintext.encode("ascii")
    return bytes(
        a ^ b for a, b in zip(raw, _stream(session_id, secret, len(raw)), strict=True)
    ).hex()


def unseal(sealed: str, session_id: str, secret: bytes) -> str:
    """The sealed key. Raises ValueError if it does not open (another session or secret)."""
    raw = bytes.fromhex(sealed)
    return bytes(
        a ^ b for a, b in zip(raw, _stream(session_id, secret, len(raw)), strict=True)
    ).decode("ascii")
