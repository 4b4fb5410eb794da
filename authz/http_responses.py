"""Turn a ``Decision`` into the HTTP/1.1 answer Envoy's ``http_service`` ext_authz expects.

Envoy reads a 200 as "allowed" and anything else as a denial it passes on to the client, with
the body. Which answer headers go where is Envoy's config (envoy/envoy-http.yaml), by name:

- to the upstream (``allowed_upstream_headers``): x-tollway-customer, -tier, -key-id,
  -degraded;
- to the client on success (``allowed_client_headers_on_success``): RateLimit-*,
  x-tollway-warning, -dry-run, -degraded, -credits-remaining;
- to the client on a denial (``allowed_client_headers``): content-type, www-authenticate,
  retry-after, RateLimit-*, x-tollway-credits-remaining;
- removed from the upstream request: ``x-envoy-auth-headers-to-remove`` (the key's header,
  and any x-tollway-* header this answer does not set, so none can be spoofed);
- into the access log's dynamic metadata (``dynamic_metadata_from_headers``):
  x-tollway-customer, -tier, -key-id and -reason, and x-tollway-usage-log (the signed usage
  stamp of a counted request, tollway/usage_stamp.py).

As in gRPC mode (authz/responses.py), an OK answer repeats per key: its fixed part is cached,
and the RateLimit-* lines are cached one by one.
"""

from __future__ import annotations

from functools import lru_cache

from authz.decision import (
    CREDITS_HEADER,
    CUSTOMER_HEADER,
    KEY_ID_HEADER,
    TIER_HEADER,
    Decision,
    Headers,
)
from authz.http_wire import CLOSE, json_answer, lines, status_line
from tollway.usage_stamp import METADATA_KEY

REASON_HEADER = "x-tollway-reason"
_STAMP = f"{METADATA_KEY}: ".encode()  # the stamp holds no CR or LF (tollway/usage_stamp.py)
REMOVE_HEADER = "x-envoy-auth-headers-to-remove"
CACHE_SIZE = 16_384


@lru_cache(maxsize=CACHE_SIZE)
def _ok_fixed(upstream: Headers, strip: tuple[str, ...]) -> bytes:
    remove = ((REMOVE_HEADER, ",".join(strip)),) if strip else ()
    return status_line(200) + b"content-length: 0\r\n" + lines(upstream + remove)


@lru_cache(maxsize=CACHE_SIZE)
def _client_line(key: str, value: str) -> bytes:
    return lines(((key, value),))


def build(d: Decision, keep_alive: bool = True) -> bytes:
    """The whole HTTP/1.1 response for ``d``."""
    if d.reason is None:
        head = _ok_fixed(d.upstream_headers, d.strip)
        if d.usage_stamp:
            head += _STAMP + d.usage_stamp.encode("latin-1", "replace") + b"\r\n"
        # A prepaid balance differs on every request: cached, it would only evict the lines
        # that repeat.
        client = b"".join(
            [
                _client_line(k, v) if k != CREDITS_HEADER else lines(((k, v),))
                for k, v in d.client_headers
            ]
        )
        return head + client + (b"" if keep_alive else CLOSE) + b"\r\n"
    meta = (
        (CUSTOMER_HEADER, d.customer),
        (TIER_HEADER, d.tier),
        (KEY_ID_HEADER, d.key_id),
        (REASON_HEADER, d.reason.value),
    )
    return json_answer(
        d.reason.http_status, d.body().encode(), keep_alive, (*d.client_headers, *meta)
    )
