"""The usage stamp: what authz tells Envoy's access log about a request it counted.

authz attaches a stamp to every request it lets through and counts, as ext_authz dynamic
metadata (``x-tollway-usage-log``, in both gRPC and HTTP modes). Envoy's gRPC access log
carries it, with the request's final status, to metering's receiver (metering/receiver.py),
which refunds what the tier does not bill and adds the amounts the upstream reported.

    <nonce>|<source>|<key id>|<tier>|<counted at, epoch s>[|s][|c<credits>]|<signature>

``s``: the request holds a concurrency slot in its account (max_concurrent), named by the
nonce, which the receiver frees when the request's entry arrives. ``c<credits>``: the request
spent that many prepaid credits, which the receiver gives back if the tier does not bill it.

``nonce`` is authz's own name for the counted request: the receiver applies each nonce once.
It is never the request's ``x-request-id``, which a client can choose, repeat or malform (an
Envoy that keeps the client's id would let one id sent on every request bill one reported
amount, and a malformed id none). A nonce is a random per-process prefix and a counter: unique
without a syscall per request. ``source`` is where the request was counted: an account, or a
key id. The signature is a keyed BLAKE2b over the nonce and those four fields, with
the secret authz and the receiver share (``TOLLWAY_USAGE_LOG_SECRET``): an entry from a forged
stream cannot name an account or a window authz did not stamp, nor a nonce of its own. Keyed
BLAKE2b, not HMAC-SHA256: one pass of a hash built for keying, at a fraction of HMAC's cost
per stamp.

The secret rotates: ``TOLLWAY_USAGE_LOG_SECRET=new,old`` signs with the first and reads a stamp
signed with any. Give the receivers both first, then authz, then drop the old one from both
once every entry stamped before has arrived (``TOLLWAY_ACCESSLOG_MAX_AGE_S``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from tollway.compare import same_as_any
from tollway.nonces import nonces
from tollway.settings import listed

METADATA_KEY = "x-tollway-usage-log"  # the dynamic metadata key, and authz's HTTP answer header
NAMESPACE = "envoy.filters.http.ext_authz"  # where Envoy files ext_authz's metadata
# Envoy's x-request-id is a UUID; anything usable as a Redis hash tag's body, and short. Used
# only to find the stamp of a check Envoy gave up on (below), never to bill by.
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_NONCE = re.compile(r"^[0-9a-f]{17,40}$")  # 16 hex of prefix, then the counter in hex
_CREDITS = re.compile(r"^c[1-9][0-9]{0,17}$")
_SIG_BYTES = 12
# How long authz keeps the stamp of a check Envoy gave up on (tw:{<request id>}:unheard): the
# receiver refunds it when Envoy's entry for the request arrives, within seconds.
UNHEARD_TTL_S = 3600


@dataclass(frozen=True)
class Stamp:
    nonce: str  # authz's own name for the counted request: what the receiver applies once
    source: str
    key_id: str
    tier: str
    at: int  # epoch seconds (Redis time) the request was counted at
    slot: bool = False  # holds a concurrency slot named by the nonce
    credits: int = 0  # prepaid credits the request spent

    def window(self, window_s: int) -> int:
        return self.at - self.at % window_s


class Stamper:
    """Signs stamps (authz) and reads them back (the receiver)."""

    def __init__(self, secret: str) -> None:
        """``secret``: one, or several comma-separated with the one to sign with first."""
        every = listed(secret)
        if not every:
            raise ValueError("the usage log secret is empty")
        # BLAKE2b keys are <= 64 bytes
        self._keys = [hashlib.sha256(x.encode()).digest() for x in every]
        self._nonces = nonces()

    def _sig(self, body: str, key: bytes | None = None) -> str:
        k = key if key is not None else self._keys[0]
        return hashlib.blake2b(body.encode(), key=k, digest_size=_SIG_BYTES).hexdigest()

    def sign(
        self, source: str, key_id: str, tier: str, at: int, slot: str = "", credits: int = 0
    ) -> str:
        """The stamp's text for one counted request, under a nonce never used before: the id
        of the concurrency slot the request holds (from ``tollway.nonces``), if it holds one;
        and the prepaid credits it spent, if any."""
        body = f"{slot or next(self._nonces)}|{source}|{key_id}|{tier}|{at}"
        if slot:
            body += "|s"
        if credits > 0:
            body += f"|c{credits}"
        return f"{body}|{self._sig(body)}"

    def read(self, text: str) -> Stamp | None:
        """The stamp in ``text`` if authz signed it; else None."""
        parts = text.split("|")
        extra = parts[5:-1]  # [s][c<credits>], in that order
        slot = bool(extra) and extra[0] == "s"
        if slot:
            extra = extra[1:]
        credits = 0
        if extra and _CREDITS.match(extra[0]):
            credits = int(extra[0][1:])
            extra = extra[1:]
        if len(parts) < 6 or extra or not parts[4].isdigit() or not _NONCE.match(parts[0]):
            return None
        body, sig = text.rsplit("|", 1)
        if not same_as_any(sig, [self._sig(body, key) for key in self._keys]):
            return None
        return Stamp(parts[0], parts[1], parts[2], parts[3], int(parts[4]), slot, credits)
