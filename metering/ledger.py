"""Usage on its way from authz's per-account counters to Stripe, every hop idempotent.

    authz ─HINCRBY─> tw:{acct}:usage ─take─> tw:{acct}:outbox ─transfer─> tw:{cus}:open
          ─claim─> tw:{cus}:pending ─(send to Stripe)─ack─> tw:{cus}:sent

(The "source" below is an account, or a key id: usage an authz process counted while it did
not know the key's account.)

A source's usage hash holds requests and, for a tier with a usage_meter, the amounts its
upstream reported ("a:<window>"); both move on the same way, to their own meters. Windows
close ``slack_s`` after they end: the clock slack plus the grace for Envoy's access log to
refund what the tier does not bill (metering/receiver.py). A refund that comes later is carried
to the source's next window; one that finds no later window within ``carry_s`` becomes a dead
letter (kind "refund") for the operator, never dropped. Usage of a source that no account or
key owns (usage spooled for another store and loaded by hand, say) is parked the same way
(kind "orphan_usage", one per outbox entry: source and window), once, until an operator
retries it (then it moves on like any usage) or drops it.

take and claim are single scripts in one slot. A source and its customer are in different slots,
so transfer is made idempotent instead: each outbox entry has a marker in the customer's slot,
and is deleted from the outbox only after it has been added. A pending event has a
deterministic identifier (customer, meter, window, claim generation), so a re-send after a
crash is de-duplicated by Stripe, and is deleted only after Stripe has accepted it.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tollway import schema, scripts
from tollway.dead_letters import ERROR_REPORT, DeadLetters
from tollway.records import Period
from tollway.scan import tags_by_suffix
from tollway.scripts import Result

MARKER_TTL_S = 40 * 86400  # longer than Stripe accepts backdated events (35 days)
REFUND = "refund"  # a dead letter's kind: refunded requests with no window left to take off
ORPHAN = "orphan_usage"  # a dead letter's kind: usage whose source no account or key owns


@dataclass(frozen=True)
class PendingEvent:
    customer: str
    meter: str
    window: int  # start, epoch s
    gen: int
    value: int

    @property
    def field(self) -> str:
        return f"{self.meter}|{self.window}|{self.gen}"

    @property
    def identifier(self) -> str:
        """Deterministic, at most 100 characters, as Stripe requires."""
        raw = f"{self.customer}|{self.meter}|{self.window}|{self.gen}".encode()
        return "tw_" + hashlib.sha256(raw).hexdigest()[:48]


def parse_pending(customer: str, flat: list[Any]) -> list[PendingEvent]:
    out = []
    for field, value in zip(flat[::2], flat[1::2], strict=True):
        meter, window, gen = str(field).rsplit("|", 2)
        out.append(PendingEvent(customer, meter, int(window), int(gen), int(value)))
    return out


class Ledger:
    def __init__(self, redis: Any, window_s: int, slack_s: int, carry_s: int = 86400) -> None:
        self.redis = redis
        self.window_s = window_s
        self.slack_s = slack_s
        self.carry_s = carry_s
        self._take = scripts.register(redis, "usage_take")
        self._carry_out = scripts.register(redis, "usage_carry_out")
        self._transfer = scripts.register(redis, "usage_transfer")
        self._claim = scripts.register(redis, "usage_claim")
        self._ack = scripts.register(redis, "usage_ack")
        self._lock = scripts.register(redis, "send_lock")
        self.dead = DeadLetters(redis)

    async def discover(self) -> tuple[set[str], set[str]]:
        """(sources with usage or an outbox, customers with open or pending usage)."""
        found = await tags_by_suffix(self.redis, ("usage", "outbox", "open", "pending"))
        return found["usage"] | found["outbox"], found["open"] | found["pending"]

    async def move_usage(
        self,
        source: str,
        customer: str,
        meter: str,
        included: int = 0,
        period: Period | None = None,
        amount_meter: str = "",
    ) -> int:
        """Take the source's closed windows and transfer them to its customer; returns requests
        (and amounts) added to the ledger. With ``included`` > 0 (report = "overage"), only
        requests past that many in the window's billing period (``period``) are added.
        Amounts go to ``amount_meter``; without one (the tier has no usage_meter) they stay."""
        flat, carry, carry_at, now = await self._take_closed(source)
        moved = 0
        for entry, n in zip(flat[::2], flat[1::2], strict=True):
            amount = str(entry).startswith("a:")
            window = str(entry).removeprefix("a:").split(":", 1)[0]
            if amount and not amount_meter:
                continue  # kept until the tier names a meter for it (reported and counted)
            start = (period or Period(0, 0)).start_for(int(window))
            target = amount_meter if amount else meter
            reply = await self._transfer(
                keys=[
                    schema.transfer_marker(customer, source, entry),
                    schema.ledger(customer, "open"),
                    schema.ledger(customer, "period"),
                ],
                args=[
                    f"{target}|{window}",
                    str(n),
                    str(MARKER_TTL_S),
                    str(0 if amount else included),
                    f"{target}|{start}",
                ],
            )
            if scripts.result(reply) is Result.DONE:
                moved += int(reply[1])
            await self.redis.hdel(schema.outbox(source), entry)
        if int(carry) > 0 and int(now) - int(carry_at) >= self.carry_s:
            await self.park_carry(source, customer, meter, int(carry), int(carry_at))
        return moved

    async def _take_closed(self, source: str) -> list[Any]:
        """usage_take.lua on ``source``: its closed windows into its outbox. The reply: the
        outbox (entry, value, ...), the carry, when it began, Redis's now."""
        return list(
            await self._take(
                keys=[schema.usage(source), schema.outbox(source), schema.outbox_seq(source)],
                args=[str(self.window_s), str(self.slack_s)],
            )
        )

    async def park_orphans(self, source: str) -> list[tuple[str, int]]:
        """Usage of a source no account or key owns: its closed windows taken (as for any
        source), each outbox entry parked as a dead letter (written before the entry leaves
        the outbox, so a crash between parks it again under the same identifier, never
        loses it); returns the (entry, units) parked."""
        flat, _, _, _ = await self._take_closed(source)
        parked = []
        for raw, n in zip(flat[::2], flat[1::2], strict=True):
            entry = str(raw)
            record = {
                "kind": ORPHAN,
                "source": source,
                "entry": entry,
                "window": int(entry.removeprefix("a:").split(":", 1)[0]),
                "units": int(n),
                "reported_amount": entry.startswith("a:"),
                "reason": "no account or key owns this usage source: create its owner, then "
                "retry (it is billed then, once), or drop it",
            }
            await self.dead.park(f"tw_orphan_{source}_{entry}", record)
            await self.redis.hdel(schema.outbox(source), entry)
            parked.append((entry, int(n)))
        return parked

    async def park_carry(
        self, source: str, customer: str, meter: str, requests: int, since: int
    ) -> None:
        """Refunds that found no later window to come off within ``carry_s``: a dead letter
        the operator sees (`tollway metering dead-letters`), then off the usage hash, once."""
        identifier = f"tw_refund_{source}_{since}"
        record = {
            "kind": REFUND,
            "customer": customer,
            "source": source,
            "meter": meter,
            "requests": requests,
            "since": since,
            "reason": "refunded requests whose window was already sent, with no later "
            "usage to take them off: credit the customer in Stripe, then drop",
        }
        await self.dead.park(identifier, record)
        await self._carry_out(
            keys=[schema.usage(source), schema.applied_marker(source, f"carry-{since}")],
            args=[str(requests), str(MARKER_TTL_S)],
        )

    async def access_log_heard(self) -> int | None:
        """When the access-log receiver last heard from Envoy (epoch s); None if it never ran."""
        raw = await self.redis.get(schema.ACCESS_LOG_HEARD)
        return int(raw) if raw is not None else None

    async def claim(self, customer: str) -> list[PendingEvent]:
        flat = await self._claim(
            keys=[schema.ledger(customer, p) for p in ("open", "gen", "pending")], args=[customer]
        )
        return parse_pending(customer, flat)

    async def ack(self, p: PendingEvent) -> int:
        keys = [schema.ledger(p.customer, "pending"), schema.ledger(p.customer, "sent")]
        return int(await self._ack(keys=keys, args=[p.field, f"{p.meter}|{p.window}"]))

    async def dead_letter(self, p: PendingEvent, event: dict[str, Any], reason: str) -> None:
        """Park an event Stripe refused for good; written before the pending entry goes."""
        record = {"event": event, "reason": reason, "customer": p.customer, "field": p.field}
        await self.dead.park(p.identifier, record)
        await self.redis.hdel(schema.ledger(p.customer, "pending"), p.field)

    async def dead_letters(self) -> dict[str, dict[str, Any]]:
        return await self.dead.all()

    async def retry_dead_letter(self, identifier: str) -> bool:
        """Put a dead letter back to pending (same identifier), e.g. after fixing a customer."""
        rec = await self.dead.get(identifier)
        if rec is None:
            return False
        if rec.get("kind") == ERROR_REPORT:
            raise ValueError(
                "a Stripe error report is not a meter event; fix it in Stripe, then drop it"
            )
        if rec.get("kind") == REFUND:
            raise ValueError(
                "a refund has no meter event to send; credit the customer in Stripe, then drop it"
            )
        if rec.get("kind") == ORPHAN:
            # Back into its source's outbox, where the next pass moves it to its owner's
            # ledger (once: transfers are marked per entry), or parks it again if it has none.
            await self.redis.hsetnx(schema.outbox(rec["source"]), rec["entry"], rec["units"])
            await self.dead.remove(identifier)
            return True
        value = int(rec["event"]["payload"]["value"])
        await self.redis.hset(schema.ledger(rec["customer"], "pending"), rec["field"], value)
        await self.dead.remove(identifier)
        return True

    async def drop_dead_letter(self, identifier: str) -> bool:
        return await self.dead.remove(identifier)

    async def lock(self, customer: str, owner: str, ttl_ms: int) -> bool:
        """Take (or renew) the customer's send lock: only its holder sends for the customer.
        A dead daemon's lock expires after ``ttl_ms``, and another takes its customers over."""
        reply = await self._lock(keys=[schema.ledger(customer, "lock")], args=[owner, str(ttl_ms)])
        return scripts.result(reply) is Result.DONE

    async def unlock(self, customer: str, owner: str) -> None:
        name = schema.ledger(customer, "lock")
        if await self.redis.get(name) == owner:
            await self.redis.delete(name)

    async def customer_view(self, customer: str) -> AsyncIterator[tuple[str, str, int]]:
        """(state, "<meter>|<window>[|gen]", requests) for every window of the customer."""
        for state in ("open", "pending", "sent"):
            for field, n in (await self.redis.hgetall(schema.ledger(customer, state))).items():
                yield state, field, int(n)
