"""Sessions in signed cookies, and CSRF tokens bound to them. No I/O.

A session cookie is ``<sid>.<customer>.<expiry>.<generation>.<signature>``: a random session
id, the customer's id in base64url (empty before sign-in, so a visitor still gets a CSRF
token), the expiry in epoch seconds, the customer's session generation when it was made, and
an HMAC-SHA256 over the first four with the portal's secret. A cookie tampered with, past its
expiry, or not plain ASCII reads as no session. The secret rotates: given several
(``TOLLWAY_PORTAL_SECRET=new,old``), cookies and CSRF tokens are signed with the first and
accepted under any, so nobody is signed out while the old one is retired. The generation lives in Redis
(portal/generations.py): signing out bumps it, which ends every session of that customer, a
stolen cookie included. A CSRF token is an HMAC of the session's random id: a form posted from
another site carries none, and one copied from another session does not verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from tollway.compare import same_as_any

COOKIE = "tollway_session"


@dataclass(frozen=True)
class Session:
    sid: str  # random, per session: what CSRF tokens are bound to
    customer: str  # "" until signed in
    expires: int
    generation: int = 0  # the customer's session generation it was made in

    @property
    def signed_in(self) -> bool:
        return bool(self.customer)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(
        self, secret: str | list[str], ttl_s: int, now: Callable[[], float] = time.time
    ) -> None:
        """``secret``: one, or several with the one to sign with first."""
        every = [secret] if isinstance(secret, str) else secret
        if not every:
            raise ValueError("Sessions needs a secret")
        self._keys = [hashlib.sha256(b"tollway-portal|" + s.encode()).digest() for s in every]
        self.ttl_s = ttl_s
        self._now = now

    def _sig(self, body: str, key: bytes | None = None) -> str:
        mac = hmac.new(key if key is not None else self._keys[0], body.encode(), hashlib.sha256)
        return _b64(mac.digest())

    def _verifies(self, body: str, sig: str) -> bool:
        """Whether ``sig`` signs ``body`` under any of the secrets (each compared in full)."""
        return same_as_any(sig, [self._sig(body, key) for key in self._keys])

    def new(self, customer: str = "", generation: int = 0) -> Session:
        """A fresh session: a new sid at sign-in, so a token from before cannot carry over."""
        return Session(
            secrets.token_urlsafe(16), customer, int(self._now()) + self.ttl_s, generation
        )

    def dump(self, s: Session) -> str:
        body = f"{s.sid}.{_b64(s.customer.encode())}.{s.expires}.{s.generation}"
        return f"{body}.{self._sig(body)}"

    def load(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``, or None if it is missing, tampered with or expired."""
        if not cookie or len(cookie) > 1024 or not cookie.isascii():
            return None
        parts = cookie.split(".")
        if len(parts) != 5 or not parts[2].isdigit() or not parts[3].isdigit():
            return None
        body, sig = cookie.rsplit(".", 1)
        if not self._verifies(body, sig):
            return None
        try:
            customer = _unb64(parts[1]).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        if int(parts[2]) <= self._now():
            return None
        return Session(parts[0], customer, int(parts[2]), int(parts[3]))

    def csrf(self, s: Session) -> str:
        return self._sig(f"csrf|{s.sid}")

    def csrf_ok(self, s: Session | None, token: str | None) -> bool:
        return s is not None and bool(token) and self._verifies(f"csrf|{s.sid}", str(token))
