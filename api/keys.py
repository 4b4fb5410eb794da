"""``/v1/keys``: create, read, list, update, rotate, suspend, resume and revoke keys, each
through the one lifecycle (tollway/lifecycle.py), as the token's actor."""

from __future__ import annotations

from api.errors import invalid
from api.models import CreatedKey, CreateKey, Key, KeyList, KeyQuery, RotateKey, UpdateKey
from api.operations import Call, Handler, Operation
from tollway import key_index
from tollway.key_store import KeyDetails, KeyNotFound
from tollway.keys import KeyMode, new_customer_id
from tollway.records import KeyRecord, KeyState


def key_view(record: KeyRecord, state: KeyState) -> Key:
    return Key(
        id=record.key_id,
        prefix=record.prefix,
        state=state.value,
        tier=record.tier,
        account=record.account,
        customer=record.customer,
        subscription=record.subscription or None,
        mode="test" if record.mode == KeyMode.TEST.value else "live",
        name=record.name,
        external_id=record.external_id or None,
        metadata=record.meta,
        created=record.created,
        last_used=record.last_used or None,
        expires_at=record.expires_at or None,
        successor=record.successor or None,
    )


async def _shown(call: Call, record: KeyRecord) -> Key:
    return key_view(record, await call.services.lifecycle(call.actor).state(record))


async def create(call: Call) -> CreatedKey:
    body: CreateKey = call.body
    lifecycle = call.services.lifecycle(call.actor)
    details = KeyDetails(body.name, body.external_id or "", body.metadata, body.expires_at or 0)
    mode = KeyMode.TEST if body.test else KeyMode.LIVE
    if body.subscription:
        if body.tier or body.customer:
            field = "tier" if body.tier else "customer"
            raise invalid(f"{field} comes from the subscription; leave it out", field)
        plaintext, record = await lifecycle.create_for_subscription(
            body.subscription, mode, details
        )
    else:
        if not body.tier:
            raise invalid("tier is required (or subscription)", "tier")
        if call.services.tiers().get(body.tier) is None:
            raise invalid(f"unknown tier {body.tier!r}", "tier")
        customer = body.customer or new_customer_id()
        plaintext, record = await lifecycle.create(body.tier, customer, mode, details)
    shown = await _shown(call, record)
    return CreatedKey(**shown.model_dump(), key=plaintext)


async def get(call: Call) -> Key:
    return await _shown(call, await call.services.keys.get(call.path["key_id"]))


async def listing(call: Call) -> KeyList:
    q: KeyQuery = call.query
    filters = (
        ("account", key_index.OWNER, q.account),
        ("customer", key_index.OWNER, q.customer),
        ("external_id", key_index.EXTERNAL, q.external_id),
    )
    given = [(kind, value) for _, kind, value in filters if value]
    if len(given) > 1:
        named = [field for field, _, value in filters if value]
        raise invalid("filter by one of account, customer or external_id", named[1])
    kind, value = given[0] if given else (key_index.ALL, "")
    keys = call.services.keys
    after = ""
    if q.starting_after:
        try:
            after = key_index.key_member(await keys.get(q.starting_after))
        except KeyNotFound:
            raise invalid("starting_after is not a key", "starting_after") from None
    name = key_index.key_index(kind, value)
    ids, more = await keys.index.key_ids(name, after, q.limit)
    records = await keys.records(ids)
    if q.account:  # a customer's index also lists its subscriptions' keys
        records = [r for r in records if r.account == q.account]
    listed = await call.services.lifecycle(call.actor).states(records)
    return KeyList(data=[key_view(r, s) for r, s in listed], has_more=more)


async def update(call: Call) -> Key:
    body: UpdateKey = call.body
    lifecycle = call.services.lifecycle(call.actor)
    record = await lifecycle.update(call.path["key_id"], body.name, body.metadata, body.expires_at)
    return await _shown(call, record)


async def rotate(call: Call) -> CreatedKey:
    body: RotateKey = call.body
    lifecycle = call.services.lifecycle(call.actor)
    plaintext, record = await lifecycle.rotate(call.path["key_id"], body.overlap_s)
    shown = await _shown(call, record)
    return CreatedKey(**shown.model_dump(), key=plaintext)


def _change(method: str) -> Handler:
    async def change(call: Call) -> Key:
        lifecycle = call.services.lifecycle(call.actor)
        return await _shown(call, await getattr(lifecycle, method)(call.path["key_id"]))

    change.__name__ = method
    return change


KEY = "/v1/keys/{key_id}"
OPERATIONS = [
    Operation(
        "POST",
        "/v1/keys",
        "create_key",
        "keys:write",
        "Create a key for a customer and tier, or a subscription; the key is in this answer only",
        create,
        CreatedKey,
        CreateKey,
        errors=(400, 404, 409),
    ),
    Operation(
        "GET",
        "/v1/keys",
        "list_keys",
        "keys:read",
        "List keys, oldest first: all, an account's, a customer's or an external id's",
        listing,
        KeyList,
        query=KeyQuery,
        errors=(400,),
    ),
    Operation("GET", KEY, "get_key", "keys:read", "Get a key (never the key itself)", get, Key),
    Operation(
        "PATCH",
        KEY,
        "update_key",
        "keys:write",
        "Change a key's name, metadata or expiry",
        update,
        Key,
        UpdateKey,
        errors=(400, 404, 409),
    ),
    Operation(
        "POST",
        f"{KEY}/rotate",
        "rotate_key",
        "keys:write",
        "Issue a successor; the old key keeps working for the overlap, then expires",
        rotate,
        CreatedKey,
        RotateKey,
        errors=(400, 404, 409),
    ),
    Operation(
        "POST",
        f"{KEY}/suspend",
        "suspend_key",
        "keys:write",
        "Hold a key (402) without revoking it",
        _change("suspend"),
        Key,
        errors=(400, 404, 409),
    ),
    Operation(
        "POST",
        f"{KEY}/resume",
        "resume_key",
        "keys:write",
        "Lift an operator's hold on a key",
        _change("resume"),
        Key,
        errors=(400, 404, 409),
    ),
    Operation(
        "POST",
        f"{KEY}/revoke",
        "revoke_key",
        "keys:write",
        "Revoke a key for good (401)",
        _change("revoke"),
        Key,
        errors=(400, 404),
    ),
]
