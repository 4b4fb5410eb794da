"""The usage stamp, and what an access-log entry means for billing (both pure)."""

from __future__ import annotations

import pytest

from authz import http_responses
from authz.decision import Decision
from metering.outcomes import BadAmount, Entry, judge, outcome, parse_amount
from tests.support import TEST_TIERS
from tollway.tiers import parse_tiers
from tollway.usage_stamp import Stamper

RID = "f47ac10b-58cc-4372-a567-0e02b2c3d479"
TABLE = parse_tiers(
    TEST_TIERS
    + """
[tiers.strict]
requests_per_second = 1.0
burst = 1
monthly_quota = 0
over_quota = "bill"
bill_statuses = ["200", "timeout"]
refund_quota = false
usage_meter = "tokens"
""",
    "t",
)


def test_a_stamp_reads_back_only_unedited_and_with_its_secret():
    """A stamp reads back whole; another secret, an edited field or nonce, or junk, do not."""
    s = Stamper("secret")
    text = s.sign("sub_1", "0123456789abcdef", "pro", 1_790_000_000)
    stamp = s.read(text)
    assert stamp is not None
    assert (stamp.source, stamp.key_id, stamp.tier, stamp.at) == (
        "sub_1", "0123456789abcdef", "pro", 1_790_000_000)  # fmt: skip
    assert stamp.window(60) == 1_790_000_000 - 1_790_000_000 % 60
    assert Stamper("other").read(text) is None
    assert s.read(text.replace("|pro|", "|free|")) is None
    assert s.read(text.replace("sub_1", "sub_2")) is None
    assert s.read(("f" if text[0] != "f" else "e") + text[1:]) is None
    assert s.read("a|b|c") is None and s.read("") is None


def test_every_stamp_has_a_nonce_of_its_own():
    """Two stamps of the same request fields, from one process or two, never share a nonce:
    the receiver applies each nonce once, so each counted request bills its own amount."""
    a, b = Stamper("secret"), Stamper("secret")
    nonces = [a.read(a.sign("sub_1", "k", "pro", 1)) for _ in range(1000)]
    nonces += [b.read(b.sign("sub_1", "k", "pro", 1)) for _ in range(1000)]
    assert len({n.nonce for n in nonces if n is not None}) == 2000


def test_the_secret_rotates_receivers_first():
    """Receivers given new,old read stamps signed under either; authz given new,old signs
    under the new one, which receivers still on the old one alone cannot read; once both
    drop the old one, its stamps are refused."""
    old, both, new = Stamper("old-secret"), Stamper("new-secret, old-secret"), Stamper("new-secret")
    before, during = old.sign("sub_1", "k", "pro", 1), both.sign("sub_1", "k", "pro", 1)
    assert both.read(before) is not None and both.read(during) is not None
    assert new.read(during) is not None and old.read(during) is None
    assert new.read(before) is None


def test_an_empty_secret_is_refused():
    for empty in ("", " , "):
        with pytest.raises(ValueError):
            Stamper(empty)


@pytest.mark.parametrize(
    ("code", "flags", "want"),
    [(200, (), "200"), (404, (), "404"), (503, (), "503"), (0, (), "aborted"),
     (503, ("upstream_connection_termination",), "reset"),
     (200, ("upstream_remote_reset",), "reset"),  # headers went out, then the upstream reset
     (504, ("upstream_request_timeout",), "timeout")],
)  # fmt: skip
def test_outcome(code, flags, want):
    assert outcome(code, frozenset(flags)) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [(None, (0, None)), ("", (0, None)), ("0", (0, None)), ("42", (42, None)), (" 7 ", (7, None)),
     ("100", (100, None)), ("101", (0, BadAmount.TOO_LARGE)), ("-1", (0, BadAmount.NEGATIVE)),
     ("1.0", (0, BadAmount.NOT_INTEGER)), ("1e3", (0, BadAmount.NOT_INTEGER)),
     ("0x10", (0, BadAmount.NOT_INTEGER)), ("٣", (0, BadAmount.NOT_INTEGER)),
     ("3,3", (0, BadAmount.REPEATED))],
)  # fmt: skip
def test_parse_amount(raw, want):
    assert parse_amount(raw, 100) == want


def entry(code: int, amount: str | None = None, flags: tuple[str, ...] = ()) -> Entry:
    return Entry(RID, "stamp", code, frozenset(flags), amount)


def test_judge_by_the_default_bill_statuses():
    free = TABLE.get("free")
    assert judge(entry(200), free, 100).refund is False
    assert judge(entry(429), free, 100).refund is False
    assert judge(entry(500), free, 100).refund is True
    assert judge(entry(200, flags=("upstream_remote_reset",)), free, 100).refund is True
    v = judge(entry(502, "9"), free, 100)
    assert (v.refund, v.refund_quota, v.amount) == (True, True, 0)
    assert judge(entry(200, "9"), free, 100).amount == 0  # free has no usage_meter


def test_judge_by_a_tiers_own_bill_statuses():
    strict = TABLE.get("strict")
    assert judge(entry(200, "9"), strict, 100).amount == 9
    v = judge(entry(201, "9"), strict, 100)
    assert (v.refund, v.refund_quota, v.amount) == (True, False, 0)
    assert judge(entry(504, flags=("upstream_request_timeout",)), strict, 100).refund is False
    assert judge(entry(500), None, 100).refund is False  # unknown tier: billed as counted


def test_http_mode_answer_carries_the_stamp_for_envoys_metadata():
    d = Decision(None, key_id="k", customer="c", tier="t")
    d.usage_stamp = "0011|sub_1|k|t|1|abc"
    assert b"\r\nx-tollway-usage-log: 0011|sub_1|k|t|1|abc\r\n" in http_responses.build(d)
    d.usage_stamp = ""
    assert b"x-tollway-usage-log" not in http_responses.build(d)
