"""Turn a ``Decision`` into the HTTP/1.1 answer Envoy's ``http_service`` ext_authz expects.

Envoy reads a 200 as "allowed" and anything else as a denial it passes on to the client, with
the body. Which answer headers go where is Envoy's config (envoy/envoy-http.yaml), by name:

- to the upstream (``allowed_upstream_headers``): x-tollway-customer, -tier, -key-id,
  -degraded;
- to the client on success (``allowed_client_headers_on_success``): RateLimit-*,
  x-tollway-warning, -dry-run, -degraded;
- to the client on a denial (``allowed_client_headers``): content-type, www-authenticate,
  retry-after, RateLimit-*;
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

from authz.decision import CUSTOMER_HEADER, KEY_ID_HEADER, TIER_HEADER, Decision, Headers
from tollway.errors import error_body
from tollway.usage_stamp import METADATA_KEY

REASON_HEADER = "x-tollway-reason"
_STAMP = f"{METADATA_KEY}: ".encode()  # the stamp holds no CR or LF (tollway/usage_stamp.py)
REMOVE_HEADER = "x-envoy-auth-headers-to-remove"
CACHE_SIZE = 16_384

_PHRASES = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    413: "Content Too Large",
    414: "URI Too Long",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


_NO_CRLF = str.maketrans("", "", "\r\n")


def _lines(headers: Headers) -> bytes:
    """Header lines; a value cannot end its line early (no CR or LF gets through)."""
    return b"".join(
        f"{k}: {v.translate(_NO_CRLF)}\r\n".encode("latin-1", "replace") for k, v in headers
    )


def status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {_PHRASES.get(status, 'Unknown')}\r\n".encode()


@lru_cache(maxsize=CACHE_SIZE)
def _ok_fixed(upstream: Headers, strip: tuple[str, ...]) -> bytes:
    remove = ((REMOVE_HEADER, ",".join(strip)),) if strip else ()
    return status_line(200) + b"content-length: 0\r\n" + _lines(upstream + remove)


@lru_cache(maxsize=CACHE_SIZE)
def _client_line(key: str, value: str) -> bytes:
    return _lines(((key, value),))


def build(d: Decision, keep_alive: bool = True) -> bytes:
    """The whole HTTP/1.1 response for ``d``."""
    close = b"" if keep_alive else b"connection: close\r\n"
    if d.reason is None:
        head = _ok_fixed(d.upstream_headers, d.strip)
        if d.usage_stamp:
            head += _STAMP + d.usage_stamp.encode("latin-1", "replace") + b"\r\n"
        return head + b"".join([_client_line(k, v) for k, v in d.client_headers]) + close + b"\r\n"
    body = d.body().encode()
    meta = (
        (CUSTOMER_HEADER, d.customer),
        (TIER_HEADER, d.tier),
        (KEY_ID_HEADER, d.key_id),
        (REASON_HEADER, d.reason.value),
    )
    headers = (("content-type", "application/json"), *d.client_headers, *meta)
    return (
        status_line(d.reason.http_status)
        + _lines(headers)
        + f"content-length: {len(body)}\r\n".encode()
        + close
        + b"\r\n"
        + body
    )


def plain(status: int, code: str, message: str, keep_alive: bool = False) -> bytes:
    """An answer of authz's own HTTP layer (bad request, health), with the JSON error shape."""
    body = (error_body(code, message) if status != 200 else '{"status": "serving"}').encode()
    close = b"" if keep_alive else b"connection: close\r\n"
    return (
        status_line(status)
        + b"content-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n".encode()
        + close
        + b"\r\n"
        + body
    )
