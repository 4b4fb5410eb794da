"""The clients: ``AsyncClient`` on aiohttp, ``Client`` on the standard library (urllib).

Each operation is written once, as a ``Request`` (method, path, query, body, and the model
its answer is read into) built by ``requests.py``; the two clients only send requests. POST
requests take an ``idempotency_key``: the same key and request replay the first answer.
Given a ``verify_url`` (the API's verify port, 8085 by default), ``verify_key`` goes there:
the same answer for a third of the API's CPU.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TypeVar

from pydantic import BaseModel

from api.models import (
    Account,
    AccountList,
    AuditList,
    CreatedKey,
    Credits,
    Key,
    KeyList,
    Usage,
    Verification,
)
from tollway_client import requests as r
from tollway_client.errors import ApiError, Unavailable, from_answer
from tollway_client.requests import Request

T = TypeVar("T", bound=BaseModel)
TIMEOUT_S = 10.0


class _Target:
    """Where the requests go, and as whom: both clients' settings."""

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout_s: float = TIMEOUT_S,
        verify_url: str | None = None,
    ) -> None:
        self.base_url = base_url
        self.verify_url = verify_url
        self.token = token
        self.timeout_s = timeout_s

    def url(self, req: Request[Any]) -> str:
        base = self.verify_url if req.verify and self.verify_url else self.base_url
        query = {k: str(v) for k, v in req.query.items() if v is not None}
        return base.rstrip("/") + req.path + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def headers(self, req: Request[Any]) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        if req.idempotency_key is not None:
            headers["Idempotency-Key"] = req.idempotency_key
        return headers


class Client(_Target):
    """The management API, blocking. Use as a context manager, or call ``close``."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: each call opens and closes its own connection."""

    def send(self, req: Request[T]) -> T:
        data = None if req.body is None else json.dumps(req.body).encode()
        http = urllib.request.Request(  # noqa: S310 (the operator's own API URL)
            self.url(req), data=data, headers=self.headers(req)
        )
        http.method = req.method
        try:
            with urllib.request.urlopen(http, timeout=self.timeout_s) as answer:  # noqa: S310
                return req.answer.model_validate_json(answer.read())
        except urllib.error.HTTPError as err:
            with err:
                raise from_answer(err.code, err.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Unavailable(0, "unreachable", str(exc)) from exc

    # One method per operation (requests.py says what each sends).

    def verify_key(self, key: str, cost: int = 1, feature: str | None = None) -> Verification:
        return self.send(r.verify_key(key, cost, feature))

    def create_key(self, **fields: Any) -> CreatedKey:
        return self.send(r.create_key(**fields))

    def list_keys(self, **query: Any) -> KeyList:
        return self.send(r.list_keys(**query))

    def get_key(self, key_id: str) -> Key:
        return self.send(r.get_key(key_id))

    def update_key(self, key_id: str, **fields: Any) -> Key:
        return self.send(r.update_key(key_id, **fields))

    def rotate_key(self, key_id: str, overlap_s: int = 86_400, **kw: Any) -> CreatedKey:
        return self.send(r.rotate_key(key_id, overlap_s, **kw))

    def suspend_key(self, key_id: str, **kw: Any) -> Key:
        return self.send(r.suspend_key(key_id, **kw))

    def resume_key(self, key_id: str, **kw: Any) -> Key:
        return self.send(r.resume_key(key_id, **kw))

    def revoke_key(self, key_id: str, **kw: Any) -> Key:
        return self.send(r.revoke_key(key_id, **kw))

    def list_accounts(self, **query: Any) -> AccountList:
        return self.send(r.list_accounts(**query))

    def get_account(self, account: str) -> Account:
        return self.send(r.get_account(account))

    def suspend_account(self, account: str, **kw: Any) -> Account:
        return self.send(r.suspend_account(account, **kw))

    def resume_account(self, account: str, **kw: Any) -> Account:
        return self.send(r.resume_account(account, **kw))

    def set_account_tier(self, account: str, tier: str) -> Account:
        return self.send(r.set_account_tier(account, tier))

    def set_account_limits(self, account: str, **limits: Any) -> Account:
        return self.send(r.set_account_limits(account, **limits))

    def clear_account_limits(self, account: str) -> Account:
        return self.send(r.clear_account_limits(account))

    def get_credits(self, account: str) -> Credits:
        return self.send(r.get_credits(account))

    def move_credits(self, account: str, credits: int, reason: str, **kw: Any) -> Credits:
        return self.send(r.move_credits(account, credits, reason, **kw))

    def get_usage(self, customer: str | None = None, account: str | None = None) -> Usage:
        return self.send(r.get_usage(customer, account))

    def list_audit(self, **query: Any) -> AuditList:
        return self.send(r.list_audit(**query))


class AsyncClient(_Target):
    """The management API on aiohttp. Use as an async context manager, or ``await close()``.
    Its connections are opened on the first call (in the loop that makes it)."""

    _session: Any = None  # aiohttp.ClientSession, once a call made it

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, req: Request[T]) -> T:
        import aiohttp

        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._session.request(
                req.method,
                self.url(req),
                data=None if req.body is None else json.dumps(req.body),
                headers=self.headers(req),
            ) as answer:
                raw = await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(0, "unreachable", str(exc)) from exc
        if status != 200:
            raise from_answer(status, raw)
        return req.answer.model_validate_json(raw)

    async def verify_key(self, key: str, cost: int = 1, feature: str | None = None) -> Verification:
        return await self.send(r.verify_key(key, cost, feature))

    async def create_key(self, **fields: Any) -> CreatedKey:
        return await self.send(r.create_key(**fields))

    async def list_keys(self, **query: Any) -> KeyList:
        return await self.send(r.list_keys(**query))

    async def get_key(self, key_id: str) -> Key:
        return await self.send(r.get_key(key_id))

    async def update_key(self, key_id: str, **fields: Any) -> Key:
        return await self.send(r.update_key(key_id, **fields))

    async def rotate_key(self, key_id: str, overlap_s: int = 86_400, **kw: Any) -> CreatedKey:
        return await self.send(r.rotate_key(key_id, overlap_s, **kw))

    async def suspend_key(self, key_id: str, **kw: Any) -> Key:
        return await self.send(r.suspend_key(key_id, **kw))

    async def resume_key(self, key_id: str, **kw: Any) -> Key:
        return await self.send(r.resume_key(key_id, **kw))

    async def revoke_key(self, key_id: str, **kw: Any) -> Key:
        return await self.send(r.revoke_key(key_id, **kw))

    async def list_accounts(self, **query: Any) -> AccountList:
        return await self.send(r.list_accounts(**query))

    async def get_account(self, account: str) -> Account:
        return await self.send(r.get_account(account))

    async def suspend_account(self, account: str, **kw: Any) -> Account:
        return await self.send(r.suspend_account(account, **kw))

    async def resume_account(self, account: str, **kw: Any) -> Account:
        return await self.send(r.resume_account(account, **kw))

    async def set_account_tier(self, account: str, tier: str) -> Account:
        return await self.send(r.set_account_tier(account, tier))

    async def set_account_limits(self, account: str, **limits: Any) -> Account:
        return await self.send(r.set_account_limits(account, **limits))

    async def clear_account_limits(self, account: str) -> Account:
        return await self.send(r.clear_account_limits(account))

    async def get_credits(self, account: str) -> Credits:
        return await self.send(r.get_credits(account))

    async def move_credits(self, account: str, credits: int, reason: str, **kw: Any) -> Credits:
        return await self.send(r.move_credits(account, credits, reason, **kw))

    async def get_usage(self, customer: str | None = None, account: str | None = None) -> Usage:
        return await self.send(r.get_usage(customer, account))

    async def list_audit(self, **query: Any) -> AuditList:
        return await self.send(r.list_audit(**query))


__all__ = ["ApiError", "AsyncClient", "Client"]
