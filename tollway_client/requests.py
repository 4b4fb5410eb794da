"""Each operation of the management API as the request it sends: written once, sent by both
clients (client.py). Bodies are checked against the API's own request models before they
leave (a wrong field raises pydantic's ValidationError here, not a 400 later)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from api.models import (
    Account,
    AccountList,
    AuditList,
    CreatedKey,
    CreateKey,
    Credits,
    Key,
    KeyList,
    MoveCredits,
    RotateKey,
    SetLimits,
    SetTier,
    UpdateKey,
    Usage,
    Verification,
    VerifyKey,
)

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Request(Generic[T]):
    method: str
    path: str
    answer: type[T]
    body: dict[str, Any] | None = None
    query: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    verify: bool = False  # served on verify's own port too (the client's ``verify_url``)


def _body(model: type[BaseModel], fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` checked by the API's request model, as JSON (what was left out stays out)."""
    return model.model_validate(fields).model_dump(mode="json", exclude_unset=True)


def _action(path: str, answer: type[T], idempotency_key: str | None) -> Request[T]:
    return Request("POST", path, answer, {}, idempotency_key=idempotency_key)


def verify_key(key: str, cost: int = 1, feature: str | None = None) -> Request[Verification]:
    body = _body(VerifyKey, {"key": key, "cost": cost, "feature": feature})
    return Request("POST", "/v1/keys/verify", Verification, body, verify=True)


def create_key(idempotency_key: str | None = None, **fields: Any) -> Request[CreatedKey]:
    body = _body(CreateKey, fields)
    return Request("POST", "/v1/keys", CreatedKey, body, idempotency_key=idempotency_key)


def list_keys(**query: Any) -> Request[KeyList]:
    return Request("GET", "/v1/keys", KeyList, query=query)


def get_key(key_id: str) -> Request[Key]:
    return Request("GET", f"/v1/keys/{key_id}", Key)


def update_key(key_id: str, **fields: Any) -> Request[Key]:
    return Request("PATCH", f"/v1/keys/{key_id}", Key, _body(UpdateKey, fields))


def rotate_key(
    key_id: str, overlap_s: int = 86_400, idempotency_key: str | None = None
) -> Request[CreatedKey]:
    body = _body(RotateKey, {"overlap_s": overlap_s})
    path = f"/v1/keys/{key_id}/rotate"
    return Request("POST", path, CreatedKey, body, idempotency_key=idempotency_key)


def suspend_key(key_id: str, idempotency_key: str | None = None) -> Request[Key]:
    return _action(f"/v1/keys/{key_id}/suspend", Key, idempotency_key)


def resume_key(key_id: str, idempotency_key: str | None = None) -> Request[Key]:
    return _action(f"/v1/keys/{key_id}/resume", Key, idempotency_key)


def revoke_key(key_id: str, idempotency_key: str | None = None) -> Request[Key]:
    return _action(f"/v1/keys/{key_id}/revoke", Key, idempotency_key)


def list_accounts(**query: Any) -> Request[AccountList]:
    return Request("GET", "/v1/accounts", AccountList, query=query)


def get_account(account: str) -> Request[Account]:
    return Request("GET", f"/v1/accounts/{account}", Account)


def suspend_account(account: str, idempotency_key: str | None = None) -> Request[Account]:
    return _action(f"/v1/accounts/{account}/suspend", Account, idempotency_key)


def resume_account(account: str, idempotency_key: str | None = None) -> Request[Account]:
    return _action(f"/v1/accounts/{account}/resume", Account, idempotency_key)


def set_account_tier(account: str, tier: str) -> Request[Account]:
    return Request("PATCH", f"/v1/accounts/{account}", Account, _body(SetTier, {"tier": tier}))


def set_account_limits(account: str, **limits: Any) -> Request[Account]:
    path = f"/v1/accounts/{account}/limits"
    return Request("POST", path, Account, _body(SetLimits, limits))


def clear_account_limits(account: str) -> Request[Account]:
    return Request("DELETE", f"/v1/accounts/{account}/limits", Account)


def get_credits(account: str) -> Request[Credits]:
    return Request("GET", f"/v1/accounts/{account}/credits", Credits)


def move_credits(
    account: str, credits: int, reason: str, kind: str = "adjustment",
    idempotency_key: str | None = None,
) -> Request[Credits]:  # fmt: skip
    body = _body(MoveCredits, {"credits": credits, "reason": reason, "kind": kind})
    path = f"/v1/accounts/{account}/credits"
    return Request("POST", path, Credits, body, idempotency_key=idempotency_key)


def get_usage(customer: str | None = None, account: str | None = None) -> Request[Usage]:
    """A customer's usage, or one account's (give one of them)."""
    return Request("GET", "/v1/usage", Usage, query={"customer": customer, "account": account})


def list_audit(**query: Any) -> Request[AuditList]:
    return Request("GET", "/v1/audit", AuditList, query=query)
