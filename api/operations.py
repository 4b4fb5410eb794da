"""What every operation of the management API is: its route, scope, models and handler.

The table of operations (``api.routes.OPERATIONS``) is the one description of the API: the
app (api/app.py) serves it, and the OpenAPI document (api/openapi.py) is generated from it.
A handler is a thin layer of parsing and answers over the kernel's operations (the one
lifecycle, accounts, the usage report, the audit log), which the CLI, the portal and the
webhook service call too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from api.models import Answer, Body, Query
from authz.engine import CheckEngine
from tollway.accounts import Accounts
from tollway.api_tokens import ApiToken
from tollway.audit import AuditLog
from tollway.clock import Clock
from tollway.key_store import KeyStore
from tollway.lifecycle import Lifecycle
from tollway.tiers import TierTable

# Path parameters, by name: their pattern (a value that does not match is a 404).
PATH_PATTERNS = {"key_id": r"^[0-9a-f]{16}$", "account": r"^[A-Za-z0-9_-]{1,255}$"}


@dataclass(frozen=True)
class Services:
    """What handlers act through, built once per process (api/server.py)."""

    keys: KeyStore
    audit: AuditLog
    clock: Clock
    engine: CheckEngine  # the check engine verify runs (its tier table is the API's too)

    def tiers(self) -> TierTable:
        return self.engine.tiers()

    def lifecycle(self, actor: str) -> Lifecycle:
        return Lifecycle(self.keys, self.clock, self.audit, actor)

    def accounts(self, actor: str) -> Accounts:
        return Accounts(self.keys, self.audit, actor)


@dataclass
class Call:
    """One request, parsed and validated: what a handler reads."""

    services: Services
    token: ApiToken
    path: dict[str, str]
    body: Any = None  # the operation's Body model, validated
    query: Any = None  # the operation's Query model, validated

    @property
    def actor(self) -> str:
        """Who the audit log records: the token, by id."""
        return f"token:{self.token.id}"


Handler = Callable[[Call], Awaitable[BaseModel]]


@dataclass(frozen=True)
class Operation:
    method: str  # GET, POST, PATCH, DELETE
    path: str  # /v1/keys/{key_id}
    operation_id: str  # what the client's method and the document call it
    scope: str  # what the token needs (tollway/api_tokens.py SCOPES)
    summary: str
    handler: Handler
    answer: type[Answer]
    body: type[Body] | None = None
    query: type[Query] | None = None
    errors: tuple[int, ...] = field(default=(400, 404))  # besides 401, 403, 429, 503
    hot: bool = False  # on its caller's hot path: the token is admitted hot (api/gate.py)

    @property
    def params(self) -> list[str]:
        """The path's parameters, in order."""
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]
