"""The smallest ASGI app: 200, an empty body, one header (bench/http_candidates.sh)."""

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"0"), (b"x-tollway-customer", b"cus_1")],
        }
    )
    await send({"type": "http.response.body", "body": b""})
