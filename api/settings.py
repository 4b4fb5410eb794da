"""The management API's settings, read from ``TOLLWAY_*`` (tollway.settings.load)."""

from __future__ import annotations

from dataclasses import dataclass

from authz.settings import CheckSettings
from tollway.settings import env


@dataclass(frozen=True)
class ApiSettings(CheckSettings):
    """The management API (api/). Its verify runs the check engine with the same settings as
    authz's (CheckSettings: store timeout, deadline, breaker, leases)."""

    host: str = env("TOLLWAY_API_HOST", "127.0.0.1", "address the management API binds")
    port: int = env("TOLLWAY_API_PORT", 8084, "management API HTTP port")
    # Verify alone, on the lean HTTP front (api/verify_front.py): a third of aiohttp's CPU.
    verify_port: int = env("TOLLWAY_API_VERIFY_PORT", 8085, "verify's own HTTP port (0: none)")
    # JSON bodies are small: the largest is a key's metadata (50 pairs of 40 + 500 chars).
    max_body_bytes: int = env("TOLLWAY_API_MAX_BODY", 64 * 1024, "larger bodies get 413")
    # A body must arrive within this (a client sending a byte a minute holds no worker).
    body_timeout_s: float = env("TOLLWAY_API_BODY_TIMEOUT_S", 10.0, "slower bodies get 408")
    per_token: int = env("TOLLWAY_API_PER_TOKEN", 1000, "requests per second per API token")
