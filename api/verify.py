"""``POST /v1/keys/verify``: authz's decision for a caller outside Envoy (a queue worker, a
WebSocket server, a partner's batch upload). It runs the one check engine authz serves Envoy
(authz/engine.py): the key, its billing state, the feature, the quota and the bucket in
check.lua, lease tiers included, and counts the call the same way. A denial is an answer, not
an error: 200 with ``valid: false`` and the reason Envoy's JSON denial would carry."""

from __future__ import annotations

from api.models import Verification, VerifyKey
from api.operations import Call, Operation


async def verify(call: Call) -> Verification:
    body: VerifyKey = call.body
    verdict = await call.services.engine.verify(body.key, body.cost, body.feature)
    return Verification(**vars(verdict))


VERIFY = Operation(
    "POST",
    "/v1/keys/verify",
    "verify_key",
    "verify",
    "Verify a key and count the call, as a request through Envoy would be",
    verify,
    Verification,
    VerifyKey,
    errors=(400,),
    hot=True,
)
OPERATIONS = [VERIFY]
