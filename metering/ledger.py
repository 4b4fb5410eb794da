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
from collections.abc import AsyncIterator, Mapping, Sequence
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
PLAN_FIELDS = ("customer", "tier", "period_start", "period_end")  # what usage_take.lua reads


@dataclass(frozen=True)
class Taken:
    """What ``Ledger.take`` found of one usage source: its outbox (closed windows, and entries
    an earlier pass left), its refund carry, and its account's plan (same slot, same script)."""

    source: str
    entries: list[tuple[str, int]]  # (outbox entry, units)
    carry: int  # refunded requests not yet taken off a window
    carry_at: int  # when the carry began (Redis time, s)
    now: int  # Redis time, s
    plan: dict[str, str]  # the source's account: customer, tier, period_start, period_end if set


@dataclass(frozen=True)
class Move:
    """A source's taken windows, bound for its customer's ledger (``Ledger.transfer``)."""

    taken: Taken
    customer: str
    meter: str
    included: int = 0  # requests of the billing period left unreported (report = "overage")
    period: Period | None = None  # the billing period the windows fall in
    amount_meter: str = ""  # the meter of reported amounts ("": they stay)


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
        """``take`` then ``transfer`` for one source whose owner the caller knows."""
        (taken,) = await self.take([source])
        return await self.transfer([Move(taken, customer, meter, included, period, amount_meter)])

    async def take(self, sources: Sequence[str]) -> list[Taken]:
        """Each source's closed windows into its outbox, and what its outbox then holds, with
        its account's plan: one pipeline for all (usage_take.lua)."""
        calls = [
            (
                [schema.usage(s), schema.outbox(s), schema.outbox_seq(s), schema.account_state(s)],
                [str(self.window_s), str(self.slack_s)],
            )
            for s in sources
        ]
        out = []
        for source, reply in zip(sources, await scripts.run_many(self._take, calls), strict=True):
            flat, carry, carry_at, now, plan = reply
            out.append(
                Taken(
                    source,
                    [(str(e), int(n)) for e, n in zip(flat[::2], flat[1::2], strict=True)],
                    int(carry),
                    int(carry_at),
                    int(now),
                    {
                        f: str(v)
                        for f, v in zip(PLAN_FIELDS, plan, strict=True)
                        if v not in (None, "")
                    },
                )
            )
        return out

    async def transfer(self, moves: Sequence[Move]) -> int:
        """Each source's taken windows added to its customer's open ledger (idempotent: each
        outbox entry is marked in the customer's slot), then off the outbox; returns the
        requests (and amounts) added. With ``included`` > 0 (report = "overage"), only requests
        past that many in the window's billing period are added. Amounts go to
        ``amount_meter``; without one (the tier has no usage_meter) they stay. Two pipelines
        for all of ``moves``; a carry to park costs its own round trips (rare)."""
        transfers: list[scripts.Call] = []
        done: list[tuple[str, str]] = []  # (source, outbox entry) transferred
        for m in moves:
            source = m.taken.source
            for entry, n in m.taken.entries:
                amount = entry.startswith("a:")
                window = entry.removeprefix("a:").split(":", 1)[0]
                if amount and not m.amount_meter:
                    continue  # kept until the tier names a meter for it (reported and counted)
                start = (m.period or Period(0, 0)).start_for(int(window))
                target = m.amount_meter if amount else m.meter
                transfers.append(
                    (
                        [
                            schema.transfer_marker(m.customer, source, entry),
                            schema.ledger(m.customer, "open"),
                            schema.ledger(m.customer, "period"),
                        ],
                        [
                            f"{target}|{window}",
                            str(n),
                            str(MARKER_TTL_S),
                            str(0 if amount else m.included),
                            f"{target}|{start}",
                        ],
                    )
                )
                done.append((source, entry))
            t = m.taken
            if t.carry > 0 and t.now - t.carry_at >= self.carry_s:
                await self.park_carry(source, m.customer, m.meter, t.carry, t.carry_at)
        replies = await scripts.run_many(self._transfer, transfers)
        moved = sum(int(r[1]) for r in replies if scripts.result(r) is Result.DONE)
        # Off the outbox only once added: a crash in between transfers again, marked once.
        for i in range(0, len(done), scripts.PIPELINE_WIDTH):
            async with self.redis.pipeline(transaction=False) as pipe:
                for source, entry in done[i : i + scripts.PIPELINE_WIDTH]:
                    pipe.hdel(schema.outbox(source), entry)
                await pipe.execute()
        return moved

    async def park_orphans(self, taken: Taken) -> list[tuple[str, int]]:
        """Usage of a source no account or key owns: each entry of its outbox parked as a dead
        letter (written before the entry leaves the outbox, so a crash between parks it again
        under the same identifier, never loses it); returns the (entry, units) parked."""
        source = taken.source
        for entry, n in taken.entries:
            record = {
                "kind": ORPHAN,
                "source": source,
                "entry": entry,
                "window": int(entry.removeprefix("a:").split(":", 1)[0]),
                "units": n,
                "reported_amount": entry.startswith("a:"),
                "reason": "no account or key owns this usage source: create its owner, then "
                "retry (it is billed then, once), or drop it",
            }
            await self.dead.park(f"tw_orphan_{source}_{entry}", record)
            await self.redis.hdel(schema.outbox(source), entry)
        return taken.entries

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

    async def claim(
        self, customers: Sequence[str], owner: str, ttl_ms: int
    ) -> tuple[list[str], list[PendingEvent]]:
        """Under each customer's send lock (taken for ``owner``, or renewed), its open usage
        frozen into pending events, one pipeline for all: (the customers claimed, every pending
        event of theirs). A customer whose lock another daemon holds is left out."""
        calls = [
            (
                [schema.ledger(c, p) for p in ("open", "gen", "pending", "lock")],
                [owner, str(ttl_ms)],
            )
            for c in customers
        ]
        held: list[str] = []
        events: list[PendingEvent] = []
        for c, reply in zip(customers, await scripts.run_many(self._claim, calls), strict=True):
            if scripts.result(reply) is Result.DONE:
                held.append(c)
                events += parse_pending(c, reply[1])
        return held, events

    async def ack(self, accepted: Mapping[str, Sequence[PendingEvent]], owner: str) -> int:
        """Per customer (one pipeline for all): its events Stripe accepted move from pending to
        sent, and its send lock is released if ``owner`` holds it (a customer with no events
        here is only released). Returns the requests acknowledged."""
        calls = [
            (
                [schema.ledger(c, "pending"), schema.ledger(c, "sent"), schema.ledger(c, "lock")],
                [owner, *(f for p in events for f in (p.field, f"{p.meter}|{p.window}"))],
            )
            for c, events in accepted.items()
        ]
        return sum(int(r) for r in await scripts.run_many(self._ack, calls))

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

    async def renew(self, customers: Sequence[str], owner: str, ttl_ms: int) -> list[str]:
        """Renew (or take) each customer's send lock for ``owner``, one pipeline for all; the
        customers whose lock ``owner`` now holds for the next ``ttl_ms``."""
        calls = [([schema.ledger(c, "lock")], [owner, str(ttl_ms)]) for c in customers]
        replies = await scripts.run_many(self._lock, calls)
        return [
            c for c, r in zip(customers, replies, strict=True) if scripts.result(r) is Result.DONE
        ]

    async def customer_view(self, customer: str) -> AsyncIterator[tuple[str, str, int]]:
        """(state, "<meter>|<window>[|gen]", requests) for every window of the customer."""
        for state in ("open", "pending", "sent"):
            for field, n in (await self.redis.hgetall(schema.ledger(customer, state))).items():
                yield state, field, int(n)
