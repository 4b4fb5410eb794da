"""What check.lua answered, typed. ``Code`` mirrors the constants at the top of check.lua."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

# An account's limits after its overrides: rate per second, burst, monthly quota, its
# features (None: the tier's), per_day, per_hour and max_concurrent. The rate and burst are
# those of the bucket the request took from (a route's named bucket is never overridden).
Limits = tuple[float, int, int, frozenset[str] | None, int, int, int]


SLOT_HELD = -1  # ``granted`` of an allowed request that took a concurrency slot


class Code(IntEnum):
    OK = 0
    UNKNOWN_KEY = 1
    REVOKED = 2
    PAYMENT = 3
    FEATURE = 4
    QUOTA = 5
    RATE = 6
    NO_TIER = 7
    EXPIRED = 8  # Redis ran the check after authz's deadline for it: nothing was changed
    TIER_CHANGED = 9  # the key's tier is not the one asked about (``tier``): nothing was changed
    DAY = 10  # the tier's per_day cap is reached: ``wait_ms`` until the UTC day ends
    HOUR = 11  # its per_hour cap: until the UTC hour ends
    CONCURRENCY = 12  # max_concurrent requests of the account are in flight
    CREDITS = 13  # a prepaid account's balance cannot cover the request's credits


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, and
# each check builds several. Nothing changes one after it is built.
@dataclass(slots=True)
class CheckReply:
    code: Code
    tier: str = ""
    customer: str = ""
    remaining: int = 0  # whole tokens left in the bucket
    wait_ms: int = (
        0  # denied: until a retry can pass (-1: never); allowed: until the bucket is full
    )
    quota_used: int = 0  # requests counted this billing period
    period_end: int = 0  # epoch seconds
    grace_until: int = 0  # past_due keys: epoch seconds when access stops
    would_deny: Code = Code.OK  # dry-run tiers: what the answer would have been
    now_ms: int = 0
    # lease tiers: extra tokens taken for this process to spend locally; SLOT_HELD: none, and
    # the request holds a concurrency slot (no lease is taken under a concurrency cap)
    granted: int = 0
    limits: Limits | None = None  # the account's overrides are in force: its limits
    # prepaid tiers: the account's balance after this request (None: not prepaid), and the
    # credits this request spent
    credits: int | None = None
    charged: int = 0

    @classmethod
    def parse(cls, reply: list[Any]) -> CheckReply:
        """Parse the script's reply; raises ValueError on a reply it did not produce."""
        if not reply:
            raise ValueError("empty reply from check script")
        n = len(reply)
        if (n == 11 or (n == 20 and reply[11] == "")) and type(reply[1]) is str:
            # The common shapes, as authz's client decodes them: code, tier, customer as text,
            # then eight integers, and for a prepaid tier with no overrides 7 empty places,
            # the balance and the credits spent: no conversions, unlike the general path.
            c, tier, customer, a, b, qu, pe, gr, wd, now, gt = reply[:11]
            credits, charged = (int(reply[18]), int(reply[19])) if n == 20 else (None, 0)
            return cls(
                Code(c),
                tier,
                customer,
                int(a),
                int(b),
                int(qu),
                int(pe),
                int(gr),
                Code(wd),
                int(now),
                int(gt),
                None,
                credits,
                charged,
            )
        v = [x.decode() if isinstance(x, bytes) else x for x in reply]
        v += [""] * max(0, 3 - len(v))  # short replies carry only code, tier, customer
        ints = [int(x) for x in v[3:11]]
        ints += [0] * (8 - len(ints))
        limits: Limits | None = None
        credits, charged = None, 0
        if len(v) == 20:  # a prepaid tier: the limits' places may be empty
            credits, charged = int(v[18]), int(v[19])
        if len(v) >= 18 and v[11] != "":
            features = None if v[14] == "-" else frozenset(f for f in str(v[14]).split(",") if f)
            limits = (
                float(v[11]),
                int(v[12]),
                int(v[13]),
                features,
                int(v[15]),
                int(v[16]),
                int(v[17]),
            )
        return cls(
            Code(int(v[0])),
            str(v[1]),
            str(v[2]),
            ints[0],
            ints[1],
            ints[2],
            ints[3],
            ints[4],
            Code(ints[5]),
            ints[6],
            ints[7],
            limits,
            credits,
            charged,
        )
