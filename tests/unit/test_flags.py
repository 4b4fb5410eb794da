"""Command-line flags produce settings of the declared types, like the environment does."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from authz.cli import settings_from as authz_settings
from cli.main import parser
from devkit.cli import settings_from as dev_settings


def assert_typed(settings: object) -> None:
    hints = typing.get_type_hints(type(settings))
    for f in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, f.name)
        assert isinstance(value, hints[f.name]), (f.name, value)


def test_authz_flags_are_typed():
    """`tollway authz --tiers X --port N ...` yields a Path and ints, not strings."""
    args = parser().parse_args(
        ["authz", "--tiers", "t.toml", "--port", "7", "--workers", "2", "--redis-url", "redis://x"]
    )
    s = authz_settings(args, {})
    assert s.tiers == Path("t.toml") and s.port == 7 and s.workers == 2
    assert_typed(s)


def test_dev_flags_are_typed_and_a_url_means_no_own_redis():
    """`tollway dev --tiers X` yields a Path; --redis-url turns off the dev stack's own Redis."""
    args = parser().parse_args(
        ["dev", "--tiers", "t.toml", "--port", "1", "--redis-url", "redis://x"]
    )
    s, own_redis = dev_settings(args, {})
    assert s.tiers == Path("t.toml") and s.envoy_port == 1 and own_redis is False
    assert_typed(s)
    _, own_redis = dev_settings(parser().parse_args(["dev"]), {})
    assert own_redis is True
