"""The smallest RSGI app, granian's own interface: 200, an empty body (bench/http_candidates.sh)."""

from typing import Any


async def app(scope: Any, proto: Any) -> None:
    proto.response_empty(200, [("x-tollway-customer", "cus_1")])
