"""Read what a decision needs from an Envoy CheckRequest: the credential and the route's terms.

``extract(request)`` returns a ``RequestInfo``; it raises ``RouteConfigError`` when the route's
``context_extensions`` (set by the operator in envoy.yaml) hold an unusable value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_COST = 1_000_000
COST_KEY = "tollway_cost"
FEATURE_KEY = "tollway_feature"


class RouteConfigError(ValueError):
    """A route's tollway_* context extension is invalid."""


@dataclass(frozen=True, slots=True)
class RequestInfo:
    key: str | None  # the presented credential, unvalidated
    strip: tuple[str, ...]  # headers that carried it, removed before the upstream sees them
    cost: int = 1
    feature: str | None = None


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
    attrs = request.attributes
    headers = _headers(attrs.request.http)
    ext = attrs.context_extensions

    cost = 1
    if COST_KEY in ext:
        raw = ext[COST_KEY]
        if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_COST:
            raise RouteConfigError(f"{COST_KEY}={raw!r}: expected an integer 0..{MAX_COST}")
        cost = int(raw)
    feature = ext.get(FEATURE_KEY) or None

    key = headers.get("x-api-key")
    if key is not None:
        strip: tuple[str, ...] = ("x-api-key",)
        key = key.strip()
    else:
        auth = headers.get("authorization")
        key = _bearer(auth) if auth is not None else None
        # A non-Bearer Authorization header belongs to the upstream; leave it alone.
        strip = ("authorization",) if key is not None else ()
    return RequestInfo(key=key or None, strip=strip, cost=cost, feature=feature)
