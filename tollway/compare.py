"""Constant-time equality of texts that come from outside: cookies, headers, log entries.

``hmac.compare_digest`` raises TypeError on a str that is not ASCII, so a stranger's
non-ASCII cookie or header would turn a refusal into a 500; comparing UTF-8 bytes cannot.
"""

from __future__ import annotations

import hmac


def same_as_any(a: str, candidates: list[str]) -> bool:
    """Whether ``a`` equals one of ``candidates`` (a signature under each secret in force),
    comparing with every one, so the time does not say which matched."""
    return any([same(a, b) for b in candidates])


def same(a: str, b: str) -> bool:
    """Whether ``a`` equals ``b``, in time that does not depend on where they differ."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape")
    )
