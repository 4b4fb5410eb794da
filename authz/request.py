"""Read what a decision needs from what Envoy sends: the credential and the route's terms.

``extract(request)`` (a gRPC CheckRequest) and ``extract_http(headers)`` (HTTP mode) return a
``RequestInfo``; they raise ``RouteConfigError`` when the route's terms (set by the operator in
the Envoy config) hold an unusable value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tollway.errors import InvalidInput
from tollway.tier_readers import BUCKET_NAME

MAX_COST = 1_000_000
COST_KEY = "tollway_cost"
FEATURE_KEY = "tollway_feature"
BUCKET_KEY = "tollway_bucket"


class RouteConfigError(InvalidInput):
    """A route's tollway_* context extension is invalid."""


# Not frozen, for speed: see CheckReply (authz/check_reply.py).
@dataclass(slots=True)
class RequestInfo:
    key: str | None  # the presented credential, unvalidated
    strip: tuple[str, ...]  # headers that carried it, removed before the upstream sees them
    cost: int = 1
    feature: str | None = None
    bucket: str | None = None  # the route's named bucket (None: the tier's default one)
    request_id: str = ""  # Envoy's x-request-id: what the access log names the request by


def _headers(http: Any) -> Any:
    """Envoy sends ``headers`` (a map), or ``header_map`` when encode_raw_headers is set."""
    if http.headers or not http.HasField("header_map"):
        return http.headers
    return {
        h.key.lower(): (h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value)
        for h in http.header_map.headers
    }


def _bearer(value: str) -> str | None:
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def extract(request: Any) -> RequestInfo:
    """gRPC mode: the route's terms come as ``context_extensions``."""
    attrs = request.attributes
    ext = attrs.context_extensions
    return from_headers(
        _headers(attrs.request.http), ext.get(COST_KEY), ext.get(FEATURE_KEY), ext.get(BUCKET_KEY)
    )


# HTTP mode: Envoy's ``authorization_request.headers_to_add`` carries the route's terms, from
# its metadata (envoy/envoy-http.yaml). Envoy sets them itself, replacing any a client sent.
COST_HEADER = "x-tollway-cost"
FEATURE_HEADER = "x-tollway-feature"
BUCKET_HEADER = "x-tollway-bucket"


def extract_http(headers: Mapping[str, str]) -> RequestInfo:
    """HTTP mode: the route's terms come as headers Envoy adds; a route without them sends
    them empty."""
    return from_headers(
        headers,
        headers.get(COST_HEADER) or None,
        headers.get(FEATURE_HEADER),
        headers.get(BUCKET_HEADER),
    )


def from_headers(
    headers: Mapping[str, str],
    raw_cost: str | None,
    feature: str | None,
    bucket: str | None = None,
) -> RequestInfo:
    cost = 1
    if raw_cost is not None:
        if not (raw_cost.isascii() and raw_cost.isdigit()) or int(raw_cost) > MAX_COST:
            raise RouteConfigError(f"{COST_KEY}={raw_cost!r}: expected an integer 0..{MAX_COST}")
        cost = int(raw_cost)
    feature = feature or None
    bucket = bucket or None
    if bucket is not None and not BUCKET_NAME.match(bucket):
        raise RouteConfigError(f"{BUCKET_KEY}={bucket[:40]!r}: expected {BUCKET_NAME.pattern}")

    key = headers.get("x-api-key")
    if key is not None:
        strip: tuple[str, ...] = ("x-api-key",)
        key = key.strip()
    else:
        auth = headers.get("authorization")
        key = _bearer(auth) if auth is not None else None
        # A non-Bearer Authorization header belongs to the upstream; leave it alone.
        strip = ("authorization",) if key is not None else ()
    return RequestInfo(
        key=key or None,
        strip=strip,
        cost=cost,
        feature=feature,
        bucket=bucket,
        request_id=headers.get("x-request-id", ""),
    )
