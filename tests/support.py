"""Helpers shared by the test tiers: CheckRequests built the way Envoy sends them."""

from __future__ import annotations

from typing import Any

from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3 import external_auth_pb2 as pb

TEST_TIERS = """
[tiers.free]
requests_per_second = 1.0
burst = 5
monthly_quota = 1000
over_quota = "block"
free_signup = true

[tiers.pro]
requests_per_second = 10.0
burst = 20
monthly_quota = 0
over_quota = "bill"
features = ["reports", "analytics"]
stripe_prices = ["tollway_pro"]

[tiers.business]
requests_per_second = 50.0
burst = 60
monthly_quota = 0
over_quota = "bill"
features = ["reports", "analytics"]
stripe_prices = ["tollway_business"]

[tiers.capped]
requests_per_second = 100.0
burst = 100
monthly_quota = 3
over_quota = "block"

[tiers.resilient]
requests_per_second = 100.0
burst = 100
monthly_quota = 0
over_quota = "bill"
on_store_error = "allow"

[tiers.shadow]
requests_per_second = 1.0
burst = 2
monthly_quota = 0
over_quota = "bill"
dry_run = true

[tiers.big]
requests_per_second = 0.001
burst = 50
monthly_quota = 0
over_quota = "bill"
"""

# A lease-mode tier (README "Lease mode"), roomy enough that no test meets its limits.
LEASED_TIER = """
[tiers.leased]
requests_per_second = 1000.0
burst = 1000
monthly_quota = 0
over_quota = "bill"
limiter = "lease"
lease_tokens = 20
"""


def check_request(
    headers: dict[str, str] | None = None,
    path: str = "/v1/things",
    extensions: dict[str, str] | None = None,
    method: str = "GET",
) -> pb.CheckRequest:
    """A CheckRequest shaped like Envoy 1.40's: pseudo-headers and ordinary headers, lowercased."""
    all_headers = {
        ":authority": "api.example.com",
        ":method": method,
        ":path": path,
        ":scheme": "http",
        "user-agent": "curl/8.5.0",
        "accept": "*/*",
        "x-forwarded-proto": "http",
        "x-request-id": "6b1f4c1e-6f7a-4c3e-9d2b-3f0f7f6c2a11",
        "x-envoy-expected-rq-timeout-ms": "15000",
        "content-length": "0",
        "accept-encoding": "gzip",
    }
    all_headers.update(headers or {})
    return pb.CheckRequest(
        attributes=ac.AttributeContext(
            source=ac.AttributeContext.Peer(),
            request=ac.AttributeContext.Request(
                http=ac.AttributeContext.HttpRequest(
                    id="1234567890",
                    method=method,
                    headers=all_headers,
                    path=path,
                    host="api.example.com",
                    scheme="http",
                    protocol="HTTP/1.1",
                )
            ),
            context_extensions=extensions or {},
        )
    )


async def redis_dump(client) -> str:
    """Every key name and value in the database as text, whatever the type: for secret scans."""
    out: list[str] = []
    async for name in client.scan_iter("*"):
        kind = await client.type(name)
        out.append(name)
        if kind == "hash":
            out.extend(f"{k}={v}" for k, v in (await client.hgetall(name)).items())
        elif kind == "set":
            out.extend(await client.smembers(name))
        elif kind == "string":
            out.append(await client.get(name) or "")
        elif kind == "list":
            out.extend(await client.lrange(name, 0, -1))
        elif kind == "zset":
            out.extend(m for m, _ in await client.zrange(name, 0, -1, withscores=True))
    return "\n".join(out)


class RecordingPipe:
    """authz's lean pipe, keeping every command it sends (tests count or inspect them)."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.sent: list[tuple[Any, ...]] = []

    async def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self.sent += commands
        return list(await self.pipe.execute(commands))

    async def script_load(self, source: str) -> None:
        await self.pipe.script_load(source)

    async def aclose(self) -> None:
        return None
