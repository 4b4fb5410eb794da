"""Seal text that holds a freshly issued key, so that Redis never holds the key in plaintext:
a Checkout's key awaiting its one claim (webhook/checkout.py), a management API answer kept
for its Idempotency-Key (api/idempotency.py).

The sealed form is the text XORed with a keystream of keyed BLAKE2b over a context (the
session id; the token and the Idempotency-Key), with the server pepper as the key. A Redis
dump alone does not reveal the key; whoever presents the context, with the pepper, opens it.
Without a pepper set, the sealing still keeps the key out of plain sight but is only as secret
as the context.

Sealed under the pepper in force; opened under any pepper still honoured (a pepper rotation
does not lose a key awaiting its claim), the first whose opening ``fits``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

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


def unseal(sealed: str, context: str, secrets: Sequence[bytes], fits: Callable[[str], bool]) -> str:
    """The sealed text: its opening under the first of ``secrets`` that ``fits``. Raises
    ValueError if none does (another context, or a secret no longer honoured)."""
    raw = bytes.fromhex(sealed)
    for secret in secrets:
        opened = bytes(a ^ b for a, b in zip(raw, _stream(context, secret, len(raw)), strict=True))
        try:
            text = opened.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if fits(text):
            return text
    raise ValueError("the sealed text does not open under any secret in force")
