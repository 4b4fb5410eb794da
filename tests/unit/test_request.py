"""Reading the credential and route terms out of a CheckRequest."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2

from authz.request import RouteConfigError, extract
from tests.support import check_request


def test_x_api_key_is_read_and_stripped():
    """x-api-key is the credential and the header to remove."""
    info = extract(check_request({"x-api-key": " tw_live_abc "}))
    assert (info.key, info.strip, info.cost, info.feature) == (
        "tw_live_abc",
        ("x-api-key",),
        1,
        None,
    )


def test_bearer_token_is_read_and_authorization_stripped():
    """'Authorization: Bearer <key>' works with any scheme casing."""
    info = extract(check_request({"authorization": "bEaReR   tw_live_abc"}))
    assert (info.key, info.strip) == ("tw_live_abc", ("authorization",))


def test_other_authorization_schemes_are_left_for_the_upstream():
    """A Basic credential is not ours: no key, and the header is not stripped."""
    info = extract(check_request({"authorization": "Basic dXNlcjpwYXNz"}))
    assert (info.key, info.strip) == (None, ())


def test_x_api_key_wins_and_authorization_is_kept():
    """With both headers, x-api-key is used and the upstream keeps its Authorization."""
    info = extract(check_request({"x-api-key": "k1", "authorization": "Bearer jwt.for.upstream"}))
    assert (info.key, info.strip) == ("k1", ("x-api-key",))


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "  "}, {"authorization": "Bearer "}])
def test_absent_or_blank_key_is_none(headers):
    """No credential, or an empty one, reads as no key."""
    assert extract(check_request(headers)).key is None


def test_route_cost_and_feature_come_from_context_extensions():
    """tollway_cost and tollway_feature are read from the route's context_extensions."""
    info = extract(check_request(extensions={"tollway_cost": "5", "tollway_feature": "reports"}))
    assert (info.cost, info.feature) == (5, "reports")


@pytest.mark.parametrize("cost", ["-1", "abc", "1.5", "", "٣", "1000001"])
def test_bad_route_cost_is_a_route_config_error(cost):
    """A cost that is not an integer in range is an operator error, reported as such."""
    with pytest.raises(RouteConfigError, match="tollway_cost"):
        extract(check_request(extensions={"tollway_cost": cost}))


def test_header_map_is_read_when_envoy_sends_raw_headers():
    """With encode_raw_headers, Envoy fills header_map instead of headers."""
    req = check_request()
    http = req.attributes.request.http
    http.headers.clear()
    http.header_map.headers.append(base_pb2.HeaderValue(key="X-Api-Key", raw_value=b"tw_live_raw"))
    info = extract(req)
    assert (info.key, info.strip) == ("tw_live_raw", ("x-api-key",))


def test_a_route_s_bucket_comes_from_its_terms_in_both_modes():
    """tollway_bucket (gRPC: context_extensions) and x-tollway-bucket (HTTP: Envoy sets it
    from route metadata); empty is none; a name that is not a bucket name is the route's
    misconfiguration, never a bucket."""
    from authz.request import extract_http

    assert extract(check_request(extensions={"tollway_bucket": "reports"})).bucket == "reports"
    assert extract(check_request()).bucket is None
    assert extract_http({"x-tollway-bucket": "reports"}).bucket == "reports"
    assert extract_http({"x-tollway-bucket": ""}).bucket is None
    for bad in ("Reports", "a b", "x" * 33, "{tag}"):
        with pytest.raises(RouteConfigError, match="tollway_bucket"):
            extract(check_request(extensions={"tollway_bucket": bad}))
        with pytest.raises(RouteConfigError, match="tollway_bucket"):
            extract_http({"x-tollway-bucket": bad})
