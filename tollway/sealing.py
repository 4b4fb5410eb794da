"""Seal text that holds a freshly issued key, so that Redis never holds the key in plaintext:
a Checkout's key awaiting its one claim (webhook/checkout.py), a management API answer kept
for its Idempotency-Key (api/idempotency.py).

The sealed form is the text XORed with a keystream of keyed BLAKE2b over a context (the
session id; the token and the Idempotency-Key), with the server pepper as the key. A Redis
dump alone does not reveal the key; whoever presents the context, with the pepper, opens it.
Without a pepper set, the sealing still keeps the key out of plain sight but is only as secret
as the context.
"""

from __future__ import annotations

import hashlib

_DEFAULT = b"tollway-claim-v1"


def _stream(context: str, secret: bytes, n: int) -> bytes:
    key = hashlib.sha256(secret or _DEFAULT).digest()
    out = b""
    counter = 0
    while len(out) < n:
        h = hashlib.blake2b(f"{counter}:{context}".encode(), key=key, digest_size=64)
        out += h.digest()
        counter += 1
    return out[:n]


def seal(plaintext: str, context: str, secret: bytes) -> str:
    raw = plaintext.encode("utf-8")
    return bytes(a ^ b for a, b in zip(raw, _stream(context, secret, len(raw)), strict=True)).hex()


def unseal(sealed: str, context: str, secret: bytes) -> str:
    """The sealed text. Raises ValueError if it does not open (another context or secret)."""
    raw = bytes.fromhex(sealed)
    return bytes(
        a ^ b for a, b in zip(raw, _stream(context, secret, len(raw)), strict=True)
    ).decode("utf-8")
