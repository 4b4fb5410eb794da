"""The usage stamp: what authz tells Envoy's access log about a request it counted.

authz attaches a stamp to every request it lets through and counts, as ext_authz dynamic
metadata (``x-tollway-usage-log``, in both gRPC and HTTP modes). Envoy's gRPC access log
carries it, with the request's final status, to metering's receiver (metering/receiver.py),
which refunds what the tier does not bill and adds the amounts the upstream reported.

    <source>|<key id>|<tier>|<counted at, epoch s>|<signature>

``source`` is where the request was counted: an account, or a legacy key's id. The signature
is a keyed BLAKE2b over the request id and those four fields, with the secret authz and the
receiver share (``TOLLWAY_USAGE_LOG_SECRET``): an entry from a forged stream cannot name a
request, an account or a window authz did not stamp. Keyed BLAKE2b costs about 0.6 µs a
stamp here, against 1.6 µs for HMAC-SHA256 (timeit, one core of this machine).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

METADATA_KEY = "x-tollway-usage-log"  # the dynamic metadata key, and authz's HTTP answer header
NAMESPACE = "envoy.filters.http.ext_authz"  # where Envoy files ext_authz's metadata
# Envoy's x-request-id is a UUID; anything usable as a Redis hash tag's body, and short.
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_SIG_BYTES = 12
# How long authz keeps the stamp of a check Envoy gave up on (tw:{<request id>}:unheard): the
# receiver refunds it when Envoy's entry for the request arrives, within seconds.
UNHEARD_TTL_S = 3600


@dataclass(frozen=True)
class Stamp:
    request_id: str
    source: str
    key_id: str
    tier: str
    at: int  # epoch seconds (Redis time) the request was counted at

    def window(self, window_s: int) -> int:
        return self.at - self.at % window_s


class Stamper:
    """Signs stamps (authz) and reads them back (the receiver)."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the usage log secret is empty")
        self._key = hashlib.sha256(secret.encode()).digest()  # BLAKE2b keys are <= 64 bytes

    def _sig(self, body: str) -> str:
        return hashlib.blake2b(body.encode(), key=self._key, digest_size=_SIG_BYTES).hexdigest()

    def sign(self, request_id: str, source: str, key_id: str, tier: str, at: int) -> str:
        """The stamp's text; "" if the request id cannot be used (none, or not ours to trust)."""
        if not REQUEST_ID.match(request_id):
            return ""
        body = f"{source}|{key_id}|{tier}|{at}"
        return f"{body}|{self._sig(f'{request_id}|{body}')}"

    def read(self, request_id: str, text: str) -> Stamp | None:
        """The stamp in ``text`` if authz signed it for ``request_id``; else None."""
        if not REQUEST_ID.match(request_id):
            return None
        parts = text.split("|")
        if len(parts) != 5 or not parts[3].isdigit():
            return None
        body, sig = text.rsplit("|", 1)
        if not hmac.compare_digest(sig, self._sig(f"{request_id}|{body}")):
            return None
        return Stamp(request_id, parts[0], parts[1], parts[2], int(parts[3]))
