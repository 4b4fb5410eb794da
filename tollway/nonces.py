"""Names no process has used before, made without a syscall each: a usage stamp's nonce, a
decision's id when Envoy sent none."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator


def nonces(label: str = "") -> Iterator[str]:
    """``label``, then a random 64-bit prefix drawn once (no two processes share one), then a
    counter, in hex."""
    prefix = label + secrets.token_hex(8)
    return (f"{prefix}{n:x}" for n in itertools.count())
