"""``/v1/accounts``: read accounts, hold and release them, set a customer account's tier and
its own limits: what ``tollway accounts`` does, through the same kernel operations."""

from __future__ import annotations

from api.errors import invalid
from api.models import Account, AccountList, AccountQuery, SetLimits, SetTier
from api.operations import Call, Operation
from tollway import schema
from tollway.accounts import AccountView


def account_view(view: AccountView) -> Account:
    plan = view.plan
    return Account(
        id=view.account,
        customer=plan.get("customer", "") or (view.keys[0].customer if view.keys else ""),
        subscription=plan.get("subscription") or None,
        tier=plan.get("tier", ""),
        status=plan.get("status", "") or "active",
        held=bool(view.hold),
        period_start=int(plan.get("period_start") or 0) or None,
        period_end=int(plan.get("period_end") or 0) or None,
        quota_used=view.quota_used,
        day_used=view.day_used,
        hour_used=view.hour_used,
        in_flight=view.in_flight,
        overrides=view.overrides,
    )


async def _shown(call: Call, account: str) -> Account:
    return account_view(await call.services.accounts(call.actor).show(account))


async def get(call: Call) -> Account:
    return await _shown(call, call.path["account"])


async def listing(call: Call) -> AccountList:
    q: AccountQuery = call.query
    index = call.services.keys.index
    ids, more = await index.page(schema.ACCOUNT_INDEX, q.starting_after or "", q.limit)
    accounts = call.services.accounts(call.actor)
    return AccountList(data=[account_view(await accounts.show(a)) for a in ids], has_more=more)


async def suspend(call: Call) -> Account:
    await call.services.lifecycle(call.actor).suspend_account(call.path["account"])
    return await _shown(call, call.path["account"])


async def resume(call: Call) -> Account:
    await call.services.lifecycle(call.actor).resume_account(call.path["account"])
    return await _shown(call, call.path["account"])


async def set_tier(call: Call) -> Account:
    body: SetTier = call.body
    if call.services.tiers().get(body.tier) is None:
        raise invalid(f"unknown tier {body.tier!r}", "tier")
    await call.services.accounts(call.actor).set_tier(call.path["account"], body.tier)
    return await _shown(call, call.path["account"])


async def set_limits(call: Call) -> Account:
    body: SetLimits = call.body
    limits = body.model_dump(exclude_none=True, exclude={"replace"})
    if not limits and not body.replace:
        raise invalid("give at least one limit (or replace: true to clear them)")
    await call.services.accounts(call.actor).set_limits(call.path["account"], limits, body.replace)
    return await _shown(call, call.path["account"])


async def clear_limits(call: Call) -> Account:
    await call.services.accounts(call.actor).set_limits(call.path["account"], {}, clear=True)
    return await _shown(call, call.path["account"])


ACCOUNT = "/v1/accounts/{account}"
OPERATIONS = [
    Operation(
        "GET",
        "/v1/accounts",
        "list_accounts",
        "accounts:read",
        "List accounts, by id",
        listing,
        AccountList,
        query=AccountQuery,
        errors=(400,),
    ),
    Operation("GET", ACCOUNT, "get_account", "accounts:read", "Get an account", get, Account),
    Operation(
        "POST",
        f"{ACCOUNT}/suspend",
        "suspend_account",
        "accounts:write",
        "Hold every key of the account (402), its future keys too",
        suspend,
        Account,
    ),
    Operation(
        "POST",
        f"{ACCOUNT}/resume",
        "resume_account",
        "accounts:write",
        "Lift the account's hold (holds on single keys stay)",
        resume,
        Account,
    ),
    Operation(
        "PATCH",
        ACCOUNT,
        "set_account_tier",
        "accounts:write",
        "Move a customer account and all its keys to another tier (a subscription's tier "
        "follows its price)",
        set_tier,
        Account,
        SetTier,
        errors=(400, 404, 409),
    ),
    Operation(
        "POST",
        f"{ACCOUNT}/limits",
        "set_account_limits",
        "accounts:write",
        "Give the account its own limits over its tier's",
        set_limits,
        Account,
        SetLimits,
    ),
    Operation(
        "DELETE",
        f"{ACCOUNT}/limits",
        "clear_account_limits",
        "accounts:write",
        "Clear the account's own limits: its tier's apply again",
        clear_limits,
        Account,
    ),
]
