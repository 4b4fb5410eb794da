"""Sessions in signed cookies, and CSRF tokens bound to them. No I/O.

A session cookie is ``<sid>.<customer>.<expiry>.<signature>``: a random session id, the
customer's id in base64url (empty before sign-in, so a visitor still gets a CSRF token), the
expiry in epoch seconds, and an HMAC-SHA256 over the first three with the portal's secret. A
cookie tampered with, or past its expiry, reads as no session. A CSRF token is an HMAC of the
session's random id: a form posted from another site carries none, and one copied from another
session does not verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "tollway_session"


@dataclass(frozen=True)
class Session:
    sid: str  # random, per session: what CSRF tokens are bound to
    customer: str  # "" until signed in
    expires: int

    @property
    def signed_in(self) -> bool:
        return bool(self.customer)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, secret: str, ttl_s: int, now: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"tollway-portal|" + secret.encode()).digest()
        self.ttl_s = ttl_s
        self._now = now

    def _sig(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def new(self, customer: str = "") -> Session:
        """A fresh session: a new sid at sign-in, so a token from before cannot carry over."""
        return Session(secrets.token_urlsafe(16), customer, int(self._now()) + self.ttl_s)

    def dump(self, s: Session) -> str:
        body = f"{s.sid}.{_b64(s.customer.encode())}.{s.expires}"
        return f"{body}.{self._sig(body)}"

    def load(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``, or None if it is missing, tampered with or expired."""
        if not cookie or len(cookie) > 1024:
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        body, sig = cookie.rsplit(".", 1)
        if not hmac.compare_digest(sig, self._sig(body)):
            return None
        try:
            customer = _unb64(parts[1]).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        if int(parts[2]) <= self._now():
            return None
        return Session(parts[0], customer, int(parts[2]))

    def csrf(self, s: Session) -> str:
        return self._sig(f"csrf|{s.sid}")

    def csrf_ok(self, s: Session | None, token: str | None) -> bool:
        return s is not None and bool(token) and hmac.compare_digest(self.csrf(s), str(token))
