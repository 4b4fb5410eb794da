"""Constant-time equality of texts that come from outside: cookies, headers, log entries.

``hmac.compare_digest`` raises TypeError on a str that is not ASCII, so a stranger's
non-ASCII cookie or header would turn a refusal into a 500; comparing UTF-8 bytes cannot.
"""

from __future__ import annotations

import hmac


def same(a: str, b: str) -> bool:
    """Whether ``a`` equals ``b``, in time that does not depend on where they differ."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape")
    )
