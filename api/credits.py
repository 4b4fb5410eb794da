"""``/v1/accounts/{account}/credits``: a prepaid account's balance and ledger, and an
operator's grant or adjustment, with a reason: what ``tollway credits`` does, through the
same kernel operation (tollway/credits.py), audited there. An Idempotency-Key makes a retried
move safe (api/idempotency.py answers it again without moving twice)."""

from __future__ import annotations

import uuid

from api.models import Credits, MoveCredits
from api.operations import Call, Operation
from tollway.credits import Credits as Balances
from tollway.credits import Movement


async def _shown(call: Call, account: str) -> Credits:
    statement = await Balances(call.services.keys.redis).statement(account, 100)
    return Credits.model_validate(statement.public())


async def get(call: Call) -> Credits:
    return await _shown(call, call.path["account"])


async def move(call: Call) -> Credits:
    body: MoveCredits = call.body
    account = call.path["account"]
    await Balances(call.services.keys.redis, call.services.audit).adjust(
        account,
        body.credits,
        body.reason,
        call.actor,
        f"api:{uuid.uuid4().hex}",
        Movement(body.kind),
    )
    return await _shown(call, account)


CREDITS = "/v1/accounts/{account}/credits"
OPERATIONS = [
    Operation(
        "GET",
        CREDITS,
        "get_credits",
        "accounts:read",
        "A prepaid account's balance and ledger",
        get,
        Credits,
    ),
    Operation(
        "POST",
        CREDITS,
        "move_credits",
        "accounts:write",
        "Grant credits to a prepaid account, or adjust its balance, with a reason (audited)",
        move,
        Credits,
        MoveCredits,
    ),
]
