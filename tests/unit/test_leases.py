"""The lease book, on a clock that moves only when told to."""

from __future__ import annotations

from authz.check_reply import CheckReply, Code
from authz.leases import LeaseBook


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def granted(n: int, remaining: int = 900) -> CheckReply:
    return CheckReply(Code.OK, "leased", "cus_1", remaining=remaining, granted=n)


def test_spend_until_empty_then_settle_counts_and_returns():
    book = LeaseBook(1.0, Clock())
    book.grant("k", "d", granted(3))
    lease = book.peek("k", "d")
    assert lease is not None
    assert [book.spend(lease, 1) for _ in range(4)] == [True, True, True, False]
    s = book.settle("k")
    assert (s.spent, s.returned, len(s.id)) == (3, 0, 16)
    assert book.peek("k", "d") is None and book.settle("k").id == ""  # nothing owed twice


def test_a_lease_is_only_for_its_own_key_and_only_until_it_expires():
    clock = Clock()
    book = LeaseBook(1.0, clock)
    book.grant("k", "d", granted(5))
    assert book.peek("k", "other digest") is None
    clock.t += 1.0
    assert book.peek("k", "d") is None
    (s,) = book.due()
    assert (s.key_id, s.spent, s.returned) == ("k", 0, 5)
    assert book.due() == []


def test_concurrent_grants_merge_and_closed_leases_keep_their_counts():
    book = LeaseBook(1.0, Clock())
    book.grant("k", "d", granted(2))
    lease = book.peek("k", "d")
    assert lease is not None and book.spend(lease, 1)
    book.grant("k", "d", granted(4))  # a second renewal that was already in flight
    lease = book.peek("k", "d")
    assert lease is not None and (lease.tokens, lease.spent) == (5, 1)
    book.close("k")  # invalidated: not spendable, still owed
    assert book.peek("k", "d") is None and book.owed == 1
    (s,) = book.due()
    assert (s.spent, s.returned) == (1, 5)


def test_a_failed_settlement_comes_back_with_the_same_id():
    book = LeaseBook(1.0, Clock())
    book.grant("k", "d", granted(2))
    lease = book.peek("k", "d")
    assert lease is not None and book.spend(lease, 2)
    s = book.settle("k")
    book.retry(s)
    assert book.owed == 1
    assert book.due() == [s]
    assert book.owed == 0


def test_the_client_sees_the_bucket_plus_what_the_lease_holds():
    book = LeaseBook(1.0, Clock())
    book.grant("k", "d", granted(10, remaining=80))
    lease = book.peek("k", "d")
    assert lease is not None and book.spend(lease, 4)
    out = lease.outcome(burst=100, rate=10.0)
    assert (out.remaining, out.wait_ms, out.quota_used) == (86, 1400, 1)


def test_one_renewal_per_key_at_a_time():
    book = LeaseBook(1.0, Clock())
    assert book.renewing("k") and not book.renewing("k")
    book.renewed("k")
    assert book.renewing("k")
