"""The Python client (tollway_client), sync and async, against the live API on a real Redis:
every operation of the document has a method on both, answers come back as the API's models,
and error answers as the exceptions of their codes."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from api.openapi import document
from api.routes import OPERATIONS
from tests.integration.conftest import API_PEPPER as PEPPER
from tollway.api_tokens import SCOPES, ApiTokens
from tollway.audit import AuditLog
from tollway.keys import KeyHasher
from tollway_client import AsyncClient, Client, Conflict, Forbidden, InvalidRequest, NotFound
from tollway_client import requests as builders

pytestmark = pytest.mark.integration


def test_every_operation_has_a_method_on_both_clients():
    ids = {op["operationId"] for p in document(OPERATIONS)["paths"].values() for op in p.values()}
    for op_id in ids:
        assert inspect.isfunction(getattr(builders, op_id, None)), op_id
        assert callable(getattr(Client, op_id, None)), op_id
        assert inspect.iscoroutinefunction(getattr(AsyncClient, op_id, None)), op_id


async def test_the_sync_and_async_clients_drive_a_key_through_its_life(api_process, redis):
    port, _, verify_port = api_process
    tokens = ApiTokens(redis, KeyHasher(PEPPER.encode()), AuditLog(redis))
    token, _ = await tokens.create("client", set(SCOPES))
    reader, _ = await tokens.create("reader", {"keys:read"})
    base = f"http://127.0.0.1:{port}"

    def sync_part() -> str:
        with Client(base, token) as api:
            made = api.create_key(tier="pro", customer="cus_cli", external_id="u1",
                                  idempotency_key="k1")  # fmt: skip
            assert made.key.startswith("tw_live_") and made.state == "active"
            again = api.create_key(tier="pro", customer="cus_cli", external_id="u1",
                                   idempotency_key="k1")  # fmt: skip
            assert again.id == made.id  # replayed
            assert api.verify_key(made.key).valid
            assert api.get_key(made.id).external_id == "u1"
            assert [k.id for k in api.list_keys(external_id="u1").data] == [made.id]
            assert api.update_key(made.id, name="n", metadata={"a": "b"}).metadata == {"a": "b"}
            assert api.suspend_key(made.id).state == "suspended"
            assert api.verify_key(made.key).code == "payment_required"
            assert api.resume_key(made.id).state == "active"
            assert api.get_account("cus_cli").quota_used == 1
            with pytest.raises(NotFound):
                api.get_key("0123456789abcdef")
            with pytest.raises(InvalidRequest) as bad:
                api.set_account_tier("cus_cli", "no-such-tier")
            assert bad.value.field == "tier"
        with Client(base, reader) as api, pytest.raises(Forbidden):
            api.revoke_key(made.id)
        return made.id

    key_id = await asyncio.to_thread(sync_part)
    async with AsyncClient(base, token, verify_url=f"http://127.0.0.1:{verify_port}") as api:
        new = await api.rotate_key(key_id, overlap_s=0)
        assert (await api.verify_key(new.key)).valid  # on verify's own port
        assert (await api.get_account("cus_cli")).quota_used == 2
        assert new.external_id == "u1" and (await api.get_key(key_id)).state == "revoked"
        with pytest.raises(Conflict):
            await api.suspend_key(key_id)
        assert (await api.suspend_account("cus_cli")).held
        assert (await api.resume_account("cus_cli")).held is False
        assert (await api.set_account_limits("cus_cli", burst=3)).overrides == {"burst": "3"}
        assert (await api.clear_account_limits("cus_cli")).overrides == {}
        assert (await api.get_usage("cus_cli")).customer == "cus_cli"
        assert (await api.get_usage(account="cus_cli")).account == "cus_cli"
        assert {a.id for a in (await api.list_accounts()).data} == {"cus_cli"}
        actions = [e.action for e in (await api.list_audit(target=f"key:{key_id}")).data]
        assert actions[:2] == ["rotated", "resumed"] and actions[-1] == "created"
        revoked = await api.revoke_key(new.id)
        assert revoked.state == "revoked"
