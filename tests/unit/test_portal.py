"""The portal's pure parts: signed sessions and CSRF, addresses, the pricing rows."""

from __future__ import annotations

import dataclasses
import time

import pytest

from portal.pricing import plans
from portal.sessions import Sessions
from portal.settings import PortalSettings
from portal.signin import normalize
from tests.support import TEST_TIERS
from tollway.settings import SettingsError, load
from tollway.tiers import parse_tiers

SECRET = "0123456789abcdef0123"


def test_a_session_round_trips_and_a_tampered_or_expired_one_reads_as_none():
    now = [1_000.0]
    s = Sessions(SECRET, 60, now=lambda: now[0])
    session = s.new("cus_1")
    cookie = s.dump(session)
    assert s.load(cookie) == session and session.signed_in
    sid, customer, expires, generation, sig = cookie.split(".")
    forged_customer = s.dump(s.new("cus_2")).split(".")[1]
    assert s.load(".".join([sid, forged_customer, expires, generation, sig])) is None  # another
    assert s.load(".".join([sid, customer, str(int(expires) + 999), generation, sig])) is None
    assert s.load(".".join([sid, customer, expires, "7", sig])) is None  # another generation
    assert s.load(cookie[:-2] + "xx") is None
    assert s.load(Sessions("another-secret-entirely", 60, now=lambda: now[0]).dump(session)) is None
    for junk in ("", "a.b", "a.b.c.d", "x" * 2000, None):
        assert s.load(junk) is None
    now[0] += 61
    assert s.load(cookie) is None


def test_a_csrf_token_is_bound_to_its_session():
    s = Sessions(SECRET, 60)
    a, b = s.new(), s.new()
    assert s.csrf_ok(a, s.csrf(a))
    assert not s.csrf_ok(a, s.csrf(b)) and not s.csrf_ok(a, "") and not s.csrf_ok(None, s.csrf(a))
    assert not s.csrf_ok(a, None)
    assert not s.csrf_ok(a, "é" * 43)  # not ASCII: refused, not a TypeError


def test_the_session_secret_rotates_without_signing_anyone_out():
    """With the new secret first and the old one after, cookies and CSRF tokens made under
    the old one still verify, new ones are made under the new one alone; once the old one is
    dropped, its cookies read as no session."""
    old, new = "old-secret-0123456789", "new-secret-0123456789"
    before = Sessions(old, 60)
    session = before.new("cus_1")
    cookie, token = before.dump(session), before.csrf(session)
    during = Sessions([new, old], 60)
    assert during.load(cookie) == session and during.csrf_ok(session, token)
    fresh = during.dump(session)
    assert Sessions(new, 60).load(fresh) == session and before.load(fresh) is None
    after = Sessions(new, 60)
    assert after.load(cookie) is None and not after.csrf_ok(session, token)
    settings = load(PortalSettings, {"TOLLWAY_PORTAL_SECRET": f"{new}, {old}"})
    assert settings.session_secrets == [new, old]
    with pytest.raises(SettingsError, match="each of them"):
        load(PortalSettings, {"TOLLWAY_PORTAL_SECRET": f"{new},short"})


@pytest.mark.parametrize(
    ("peer", "forwarded", "hops", "want"),
    [("10.0.0.1", "203.0.113.9", 0, "10.0.0.1"),  # no trusted proxy: the header is ignored
     ("10.0.0.1", "203.0.113.9", 1, "203.0.113.9"),
     ("10.0.0.1", "1.2.3.4, 203.0.113.9", 1, "203.0.113.9"),  # the client's own entry: ignored
     ("10.0.0.1", "203.0.113.9, 10.0.0.2", 2, "203.0.113.9"),
     ("10.0.0.1", "203.0.113.9", 2, "10.0.0.1"),  # fewer hops than trusted: not proven
     ("10.0.0.1", "not-an-ip", 1, "10.0.0.1"), ("10.0.0.1", None, 1, "10.0.0.1"),
     (None, None, 0, "?"), ("10.0.0.1", " 2001:db8::1 ", 1, "2001:db8::1")],
)  # fmt: skip
def test_the_client_address_behind_trusted_proxies(peer, forwarded, hops, want):
    from tollway.client_address import client_address

    assert client_address(peer, forwarded, hops) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [(" You@Example.COM ", "you@example.com"), ("a@b.co", "a@b.co"), ("nope", None),
     ("a@b", None), ("a b@c.de", None), ("@b.co", None), ("x" * 70 + "@b.co", None)],
)  # fmt: skip
def test_normalize(raw, want):
    assert normalize(raw) == want


def test_pricing_rows_come_from_the_tier_table():
    table = parse_tiers(
        TEST_TIERS.replace(
            "[tiers.pro]", '[tiers.pro]\nprice_amount = 2900\ndescription = "Prod"'
        ).replace('stripe_prices = ["tollway_pro"]', 'stripe_prices = ["tollway_pro_monthly"]'),
        "t",
    )
    rows = {p.name: p for p in plans(table)}
    pro = rows["pro"]
    assert (pro.price, pro.paid, pro.description) == ("$29.00 / month", True, "Prod")
    assert pro.rate.endswith(f"bursts of {table.get('pro').burst:,}")
    assert rows["free"].price == "Free" and not rows["free"].paid
    assert next(iter(rows)) != "pro"  # free tiers first
    assert rows["free"].caps == ""  # no cap: nothing said


def test_the_pricing_page_says_the_caps():
    """The issue's free tier: 1,000 requests a day, or with an hour's cap too."""
    from portal.pricing import caps

    assert caps(1000, 0) == "Up to 1,000 requests a day"
    assert caps(1000, 100) == "Up to 1,000 requests a day and 100 an hour"
    assert caps(0, 100) == "Up to 100 requests an hour"
    assert caps(0, 0) == ""
    assert caps(1000, 0, 2) == "Up to 1,000 requests a day, 2 at a time"  # the issue's
    assert caps(0, 0, 2) == "Up to 2 requests at a time"
    # The shipped table's free tier is the issue's, and its card says so.
    from pathlib import Path

    from tollway.tiers import load_tiers

    shipped = load_tiers(Path(__file__).parents[2] / "tollway" / "data" / "tiers.toml")
    free = {p.name: p for p in plans(shipped)}["free"]
    assert free.caps == "Up to 1,000 requests a day, 2 at a time"


def test_the_portal_refuses_to_start_without_a_secret():
    with pytest.raises(SettingsError, match="TOLLWAY_PORTAL_SECRET"):
        load(PortalSettings, {})
    settings = load(PortalSettings, {"TOLLWAY_PORTAL_SECRET": SECRET,
                                      "TOLLWAY_PORTAL_URL": "https://portal.example.com"})  # fmt: skip
    assert settings.secure_cookies


def test_a_dashboard_card_quotes_the_limits_in_force_and_the_grace_notice():
    from portal.dashboard import card, day
    from tollway.accounts import AccountView
    from tollway.records import KeyRecord, KeyStatus

    table = parse_tiers(TEST_TIERS, "t")
    free = table.get("free")
    key = dataclasses.replace(KeyRecord.template("free", "cus_1", 1_790_000_000),
                              key_id="0123456789abcdef", status=KeyStatus.PAST_DUE,
                              grace_until=1_790_086_400)  # fmt: skip
    now = int(time.time())
    start, end = now - 10 * 86400, now + 20 * 86400
    plan = {"tier": "free", "status": "past_due", "period_start": str(start),
            "period_end": str(end)}  # fmt: skip
    c = card(AccountView("cus_1", plan, free.monthly_quota // 2, [key]), table)
    assert (c.quota, c.percent, c.resets, c.period) == (free.monthly_quota, 50, day(end),
                                                        (start, end))  # fmt: skip
    lapsed = {**plan, "period_start": str(start - 30 * 86400), "period_end": str(start)}
    assert card(AccountView("cus_1", lapsed, 0, [key]), table).period == (start, end)  # rolled
    assert c.notice.startswith("Payment overdue: access ends 2026-09-22")
    assert c.limits == f"{free.requests_per_second:g} requests/s, bursts of {free.burst:,}"
    assert c.ending == ""
    active = {**plan, "status": "active", "cancel_at": "1790086400"}
    assert card(AccountView("cus_1", active, 0, [key]), table).ending.startswith(
        "Canceled: access ends 2026-09-22"
    )
    ended = {**active, "status": "revoked", "subscription": "sub_1"}  # deleted: no notice
    assert card(AccountView("cus_1", ended, 0, [key]), table).ending == ""
    over = card(AccountView("cus_1", {**plan, "o_burst": "2", "o_quota": "0"}, 7, [key]), table)
    assert over.limits.endswith("bursts of 2") and (over.quota, over.percent) == (0, 0)
    assert c.caps == ""
    capped = AccountView("cus_1", {**plan, "o_day": "1000", "o_hour": "100"}, 7, [key], 3, 2)
    assert card(capped, table).caps == (
        "Today (UTC): 3 of 1,000 requests. This hour: 2 of 100 requests."
    )
    flying = AccountView("cus_1", {**plan, "o_conc": "2"}, 7, [key], in_flight=1)
    assert card(flying, table).caps == "In flight now: 1 of 2 requests."


def test_the_chart_sums_a_meters_windows_per_day_within_the_period():
    from portal.chart import per_day, svg

    day0 = 1_790_035_200  # a UTC midnight (2026-09-22)
    rows = {f"api_requests|{day0 + 60}": {"counting": 2, "pending": 1, "sent": 4},
            f"api_requests|{day0 + 86400 + 60}": {"counting": 0, "pending": 0, "sent": 5},
            f"tokens|{day0 + 60}": {"counting": 0, "pending": 0, "sent": 900},
            f"api_requests|{day0 - 60}": {"counting": 0, "pending": 0, "sent": 99}}  # fmt: skip
    days = per_day(rows, "api_requests", day0, day0 + 3 * 86400)
    assert days == [("09-22", 7), ("09-23", 5), ("09-24", 0)]
    drawn = svg(days, "Requests per day")
    assert drawn.count("<rect") == 3 and "09-22 7, 09-23 5, 09-24 0" in drawn


def test_alert_thresholds_are_exact_and_the_signature_binds_time_and_body():
    from portal.alerts import Alert, body, due, sign, verify

    assert (due(799, 1000), due(800, 1000), due(1000, 1000), due(5, 0)) == ([], [80], [80, 100], [])
    raw = body(Alert("cus_1", "cus_1", "free", 80, 800, 1000, 0, 1), created=5)
    header = sign(raw, "s" * 16, 1_000)
    assert verify(raw, header, "s" * 16, 1_100)
    assert not verify(raw, header, "s" * 16, 1_400)  # too old
    assert not verify(raw, header, "x" * 16, 1_100)  # another secret
    assert not verify(raw, header.replace("t=1000", "t=1001"), "s" * 16, 1_100)
    assert not verify(raw, "garbage", "s" * 16, 1_100)


def test_an_alert_webhook_needs_a_secret_and_an_http_url():
    base = {"TOLLWAY_PORTAL_SECRET": SECRET}
    with pytest.raises(SettingsError, match="TOLLWAY_ALERT_WEBHOOK_SECRET"):
        load(PortalSettings, base | {"TOLLWAY_ALERT_WEBHOOK_URL": "https://ops.example.com/a"})
    with pytest.raises(SettingsError, match="TOLLWAY_ALERT_WEBHOOK_URL"):
        load(PortalSettings, base | {"TOLLWAY_ALERT_WEBHOOK_URL": "ops.example.com",
                                     "TOLLWAY_ALERT_WEBHOOK_SECRET": SECRET})  # fmt: skip
    with pytest.raises(SettingsError, match="TOLLWAY_ALERT_ATTEMPTS"):
        load(PortalSettings, base | {"TOLLWAY_ALERT_ATTEMPTS": "0"})


def test_a_prepaid_tier_is_priced_by_its_credits_and_packs():
    """The pricing page says what a prepaid tier's requests spend and what its packs cost."""
    from portal.pricing import plans
    from tollway.settings import DEFAULT_TIERS
    from tollway.tiers import load_tiers

    (payg,) = [p for p in plans(load_tiers(DEFAULT_TIERS)) if p.name == "payg"]
    assert (payg.price, payg.signup, payg.paid) == ("Prepaid credits", True, False)
    assert payg.credits == "1 credit a request, 1 per unit of usage reported"
    assert payg.packs == ("1,000 credits for $5.00", "10,000 credits for $40.00")
    assert payg.quota == "As many requests as your credits cover"


def test_balance_alerts_are_due_below_the_low_mark_and_below_one_request():
    """low below low_credits (if set), exhausted below one request's credits; exactly."""
    from portal.credit_alerts import due

    assert due(100, 2, 100) == []
    assert due(99, 2, 100) == [("low", 100)]
    assert due(1, 2, 100) == [("low", 100), ("exhausted", 2)]
    assert due(2, 2, 0) == [] and due(-5, 1, 0) == [("exhausted", 1)]
