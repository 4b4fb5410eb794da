"""A small typed Python client for tollway's management API, sync and async.

    from tollway_client import Client

    with Client("http://127.0.0.1:8084", token, verify_url="http://127.0.0.1:8085") as api:
        made = api.create_key(tier="pro", customer="cus_123", external_id="user-42")
        print(made.key)                      # shown this once
        check = api.verify_key(made.key)     # .valid, .code, .remaining, ...
        api.suspend_account(made.account)

``AsyncClient`` has the same methods, awaited. Every method is one operation of the API
(named by its operationId in docs/api/openapi.json) and returns the API's own pydantic model
(api/models.py: the one source of its schemas). An error answer raises ``ApiError`` (or its
subclass for the code: ``Unauthorized``, ``Forbidden``, ``NotFound``, ``Conflict``,
``RateLimited``, ``InvalidRequest``, ``Unavailable``), carrying ``status``, ``code``,
``message`` and ``field``.
"""

from tollway_client.client import AsyncClient, Client
from tollway_client.errors import (
    ApiError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
]
