"""The portal against a real Redis, a real SMTP sink (aiosmtpd) and the Stripe stand-in:
pricing, and sign-in by a one-time emailed link, with its hostile cases."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from email import message_from_bytes

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.controller import Controller

from devkit.stack import free_port
from portal.app import PortalApp
from portal.backend import Backend
from portal.billing import BillingPortal
from portal.directory import accounts_of, customers_with_keys
from portal.generations import Generations
from portal.mail import Mailer
from portal.own_keys import OwnKeys
from portal.sessions import COOKIE, Sessions
from portal.signin import SignInLinks
from portal.signup import FreeSignups
from tests.support import TEST_TIERS
from tollway import schema
from tollway.clock import WallClock
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.lifecycle import Lifecycle
from tollway.tiers import parse_tiers
from tollway.usage_report import customer_windows

pytestmark = pytest.mark.integration
TABLE = parse_tiers(TEST_TIERS, "t")
URL = "http://portal.test"


class Sink:
    """Collects what the portal mails."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []  # (to, body)

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content)
        self.messages.append((envelope.rcpt_tos[0], msg.get_payload(decode=True).decode()))
        return "250 OK"


@pytest.fixture
async def portal(redis, standin):
    _, stripe, _ = standin
    sink = Sink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    customer = (await stripe.v1.customers.create_async({"email": "ada@example.com"})).id
    keys = KeyStore(redis, KeyHasher())
    await keys.create("free", customer)
    links = SignInLinks(redis, ttl_s=2, per_address=3, per_ip=100)
    backend = Backend("http://127.0.0.1:1")  # nothing listens: the webhook service is away
    signups = FreeSignups(redis, Lifecycle(keys, WallClock()), ttl_s=2)
    portal_app = PortalApp(lambda: TABLE, Sessions("0123456789abcdef-secret", 3600), links,
                    Mailer("127.0.0.1", smtp.port, "portal@test"),
                    customers_with_keys(stripe, keys, signups), accounts_of(keys), OwnKeys(signups.lifecycle),
                    lambda customer, table: customer_windows(keys, customer, table),
                    backend, signups, BillingPortal(stripe), URL, "http://api.test",
                    secure_cookies=False, generations=Generations(redis))  # fmt: skip
    client = TestClient(TestServer(portal_app.build(), host="127.0.0.1"))
    await client.start_server()
    client.keys = keys  # type: ignore[attr-defined]
    client.portal_app = portal_app  # type: ignore[attr-defined]
    yield client, sink, customer
    await client.close()
    await backend.close()
    smtp.stop()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def settled(client: TestClient) -> None:
    """Once the work the portal's answers started (look-ups, mail) has all ended: whatever
    mail it was going to send is in the sink by then (the SMTP exchange ends with the sink's
    acceptance)."""
    app = client.portal_app  # type: ignore[attr-defined]
    await asyncio.wait_for(app.background.idle(), 10)
    await asyncio.wait_for(app.mailer.sending.idle(), 10)


async def mails(sink: Sink, n: int = 1) -> list[tuple[str, str]]:
    """The sink's messages once ``n`` have arrived (SMTP is asynchronous), up to 10 s."""
    for _ in range(200):
        if len(sink.messages) >= n:
            break
        await asyncio.sleep(0.05)
    return sink.messages


async def form(client: TestClient) -> str:
    r = await client.get("/signin")
    assert r.status == 200
    return csrf_of(await r.text())


async def test_pricing_lists_the_open_tiers_with_safe_headers_and_cookie(portal):
    client, _, _ = portal
    r = await client.get("/")
    html = await r.text()
    assert r.status == 200 and "<h2>free</h2>" in html and "Sign up for free" in html
    assert "<h2>capped</h2>" not in html  # no price, no free sign-up: not on the page
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert (await client.get("/static/portal.css")).status == 200


async def test_a_link_signs_in_once_and_leaves_the_address_bar(portal):
    client, sink, customer = portal
    r = await client.post("/signin", data={"email": " Ada@Example.com", "csrf": await form(client)})
    assert r.status == 200 and "is on its way" in await r.text()
    (to, body), = await mails(sink)  # fmt: skip
    assert to == "ada@example.com"
    path = re.search(rf"{URL}(/signin/\S+)", body).group(1)  # type: ignore[union-attr]
    r = await client.get(path, allow_redirects=False)
    assert r.status == 303 and r.headers["location"] == "/signin/confirm"
    for _ in range(2):  # opening the link (a person, or a mail scanner) uses nothing
        page = await client.get("/signin/confirm")
        html = await page.text()
        assert (
            page.status == 200 and "This link signs in as <strong>ada@example.com</strong>" in html
        )
    r = await client.post("/signin/confirm", data={"csrf": csrf_of(html)}, allow_redirects=False)
    assert r.status == 303 and r.headers["location"] == "/dashboard"
    session = Sessions("0123456789abcdef-secret", 3600).load(r.cookies[COOKIE].value)
    assert session is not None and session.customer == customer
    again = await client.get(path)  # replayed
    assert again.status == 410 and again.url.path == "/signin/confirm"


async def test_a_link_is_redeemed_only_by_a_post_with_the_pages_csrf_token(portal):
    """A cross-site POST (no token) to /signin/confirm signs nobody in, and uses no link."""
    client, sink, _ = portal
    await client.post("/signin", data={"email": "ada@example.com", "csrf": await form(client)})
    path = re.search(rf"{URL}(/signin/\S+)", (await mails(sink))[0][1]).group(1)  # type: ignore[union-attr]
    await client.get(path, allow_redirects=False)
    assert (await client.post("/signin/confirm", data={})).status == 403
    assert (await client.get("/signin/confirm")).status == 200  # still usable


async def test_the_answer_is_the_same_for_a_stranger_and_nothing_is_sent(portal):
    client, sink, _ = portal
    r = await client.post(
        "/signin", data={"email": "nobody@example.com", "csrf": await form(client)}
    )
    assert r.status == 200 and "is on its way" in await r.text()
    await settled(client)
    assert sink.messages == []


async def test_a_forged_or_missing_csrf_token_or_a_tampered_cookie_is_refused(portal):
    client, sink, _ = portal
    await form(client)
    for data in ({"email": "ada@example.com"}, {"email": "ada@example.com", "csrf": "forged"}):
        r = await client.post("/signin", data=data)
        assert r.status == 403
    token = await form(client)
    jar = client.session.cookie_jar
    real = next(c for c in jar if c.key == COOKIE).value
    jar.clear()
    sid, customer, expires, generation, sig = real.split(".")
    tampered = ".".join([sid, customer, str(int(expires) + 1), generation, sig])
    jar.update_cookies({COOKIE: tampered}, response_url=client.make_url("/"))
    assert (
        await client.post("/signin", data={"email": "ada@example.com", "csrf": token})
    ).status == 403
    await settled(client)
    assert sink.messages == []


async def test_an_expired_link_does_not_sign_in(portal):
    client, sink, _ = portal
    await client.post("/signin", data={"email": "ada@example.com", "csrf": await form(client)})
    await mails(sink)
    path = re.search(rf"{URL}(/signin/\S+)", sink.messages[0][1]).group(1)  # type: ignore[union-attr]
    await asyncio.sleep(2.2)  # the links' TTL here
    assert (await client.get(path)).status == 410


async def test_asking_is_rate_limited_per_address(portal):
    client, _, _ = portal
    codes = []
    for _ in range(4):
        r = await client.post(
            "/signin", data={"email": "ada@example.com", "csrf": await form(client)}
        )
        codes.append(r.status)
    assert codes == [200, 200, 200, 429]
    bad = await client.post("/signin", data={"email": "not-an-address", "csrf": await form(client)})
    assert bad.status == 400


def signed_in(client: TestClient, customer: str) -> None:
    cookie = Sessions("0123456789abcdef-secret", 3600).dump(
        Sessions("0123456789abcdef-secret", 3600).new(customer)
    )
    client.session.cookie_jar.update_cookies({COOKIE: cookie}, response_url=client.make_url("/"))


async def test_the_dashboard_shows_only_the_signed_in_customers_own_keys(portal):
    client, _, customer = portal
    assert (await client.get("/dashboard", allow_redirects=False)).status == 303  # signed out
    keys = client.keys  # type: ignore[attr-defined]
    (mine,) = [await keys.get(k) for k in await keys.owned(customer)]
    _, other = await keys.create("pro", "cus_someone_else")
    now = int(time.time())
    await keys.redis.hset(schema.usage(mine.account), str(now - now % 60), 17)  # counted today
    signed_in(client, customer)
    html = await (await client.get("/dashboard")).text()
    assert f"<code>{mine.prefix}…</code>" in html and "Plan: free" in html
    today = datetime.fromtimestamp(now, UTC).strftime("%m-%d")
    assert "Requests per day: " in html and f"{today} 17" in html  # the chart's text
    assert other.prefix not in html and "cus_someone_else" not in html
    stolen = next(c for c in client.session.cookie_jar if c.key == COOKIE).value
    out = await client.post("/signout", data={"csrf": csrf_of(html)}, allow_redirects=False)
    assert out.status == 303
    assert (await client.get("/dashboard", allow_redirects=False)).status == 303
    # Signing out ended every session of the customer: a copy of the cookie opens nothing.
    client.session.cookie_jar.update_cookies({COOKIE: stolen}, response_url=client.make_url("/"))
    assert (await client.get("/dashboard", allow_redirects=False)).status == 303


async def test_the_dev_mail_sink_prints_each_link_it_receives(capsys):
    from devkit.mailsink import Printer

    smtp = Controller(Printer(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        await Mailer("127.0.0.1", smtp.port, "portal@test").send(
            "ada@example.com", "Your sign-in link", f"Sign in: {URL}/signin/abc\n"
        )
    finally:
        smtp.stop()
    out = capsys.readouterr().out
    assert "mail to ada@example.com: Your sign-in link" in out
    assert f"  link: {URL}/signin/abc\n" in out


async def test_key_actions_act_on_the_customers_own_keys_only(portal):
    client, _, customer = portal
    keys = client.keys  # type: ignore[attr-defined]
    (first,) = await keys.owned(customer)
    _, other = await keys.create("pro", "cus_someone_else")
    signed_in(client, customer)
    html = await (await client.get("/dashboard")).text()
    token = csrf_of(html)
    # Another customer's key, named in a form: refused, and nothing changes.
    r = await client.post("/keys/revoke", data={"csrf": token, "key_id": other.key_id})
    assert r.status == 403 and (await keys.get(other.key_id)).status.value == "active"
    r = await client.post("/keys/create", data={"csrf": token, "account": other.account})
    assert r.status == 403 and await keys.owned("cus_someone_else") == [other.key_id]
    # No CSRF token: refused.
    assert (await client.post("/keys/revoke", data={"key_id": first})).status == 403
    # A second key on the account, shown once in the answer.
    r = await client.post("/keys/create", data={"csrf": token, "account": customer})
    created = re.search(r'value="(tw_live_[0-9A-Za-z]+)"', await r.text()).group(1)  # type: ignore[union-attr]
    assert r.status == 200 and len(await keys.owned(customer)) == 2
    assert (await keys.get(created)).account == customer
    # Rotate with a day's overlap: a successor, and the old key expires in a day.
    r = await client.post("/keys/rotate", data={"csrf": token, "key_id": first, "overlap": "86400"})
    assert r.status == 200 and "Your new key" in await r.text()
    assert (await keys.get(first)).expires_at > 0 and len(await keys.owned(customer)) == 3
    bad = await client.post("/keys/rotate", data={"csrf": token, "key_id": first, "overlap": "7"})
    assert bad.status == 400
    r = await client.post(
        "/keys/revoke", data={"csrf": token, "key_id": first}, allow_redirects=False
    )
    assert r.status == 303 and (await keys.get(first)).status.value == "revoked"


async def test_with_the_webhook_service_unreachable_subscribe_and_welcome_say_so(portal):
    """The fixture's backend is a closed port: a clear 502 page, never a 500."""
    client, _, _ = portal
    token = await form(client)
    r = await client.post("/subscribe", data={"csrf": token, "tier": "pro",
                                              "email": "a@example.com"})  # fmt: skip
    assert r.status == 502 and "Checkout is unavailable" in await r.text()
    r = await client.get("/welcome?session_id=cs_test_1")
    assert r.status == 502 and "could not show your key" in await r.text()
    r = await client.post("/subscribe", data={"csrf": token, "tier": "nope",
                                              "email": "a@example.com"})  # fmt: skip
    assert r.status == 400


async def signup_link(client: TestClient, sink: Sink, address: str, tier: str = "free") -> str:
    before = len(sink.messages)
    r = await client.post("/signup", data={"csrf": await form(client), "tier": tier,
                                           "email": address})  # fmt: skip
    assert r.status == 200 and "Check your inbox" in await r.text()
    to, body = (await mails(sink, before + 1))[before]
    assert to == address.strip().lower()
    return re.search(rf"{URL}(/signup/\S+)", body).group(1)  # type: ignore[union-attr]


async def confirm_signup(client: TestClient, path: str):
    """Open the emailed link (it only asks), then press its button."""
    page = await client.get(path)
    assert page.status == 200 and page.url.path == "/signup/confirm", await page.text()
    return await client.post("/signup/confirm", data={"csrf": csrf_of(await page.text())})


async def test_a_free_sign_up_confirms_by_link_shows_the_key_once_and_signs_in(portal):
    client, sink, _ = portal
    path = await signup_link(client, sink, " Lin@Example.com")
    for _ in range(2):  # opening the link (a person, or a mail scanner) uses nothing
        page = await client.get(path)
        assert "confirms the <strong>free</strong> plan for <strong>lin@example.com</strong>" in (
            await page.text())  # fmt: skip
    assert (await client.post("/signup/confirm", data={})).status == 403  # no CSRF token
    r = await confirm_signup(client, path)
    html = await r.text()
    key = re.search(r'value="(tw_live_[0-9A-Za-z]+)"', html).group(1)  # type: ignore[union-attr]
    assert r.status == 200 and "only time it is shown" in html
    keys = client.keys  # type: ignore[attr-defined]
    record = await keys.get(key)
    assert record.tier == "free" and record.customer.startswith("free_")
    assert r.url.path == "/signup/confirm"  # the token left the address bar before use
    assert not [c for c in client.session.cookie_jar if c.key == "tollway_signup"]  # cleared
    assert (await client.get(path)).status == 410  # used
    dash = await client.get("/dashboard")  # the confirmation signed the browser in
    assert dash.status == 200 and f"<code>{record.prefix}…</code>" in await dash.text()
    # Signing up again with that address makes no second account: the link signs in, also
    # after the customer signed out (the new session is in the generation sign-out began).
    out = await client.post("/signout", data={"csrf": csrf_of(await dash.text())})
    assert out.status == 200 and (await client.get("/dashboard")).url.path == "/signin"
    again = await signup_link(client, sink, "lin@example.com")
    r = await confirm_signup(client, again)
    assert r.status == 200 and r.url.path == "/dashboard"
    assert await keys.owned(record.customer) == [record.key_id]
    # And the address can now ask for sign-in links like any customer.
    r = await client.post("/signin", data={"email": "lin@example.com", "csrf": await form(client)})
    assert "/signin/" in (await mails(sink, 3))[2][1]


async def test_a_free_sign_up_refuses_paid_or_closed_tiers_and_dead_links(portal):
    client, sink, _ = portal
    for tier in ("pro", "capped", "nope"):
        r = await client.post("/signup", data={"csrf": await form(client), "tier": tier,
                                               "email": "x@example.com"})  # fmt: skip
        assert r.status == 400
    assert (await client.post("/signup", data={"tier": "free", "email": "x@example.com"})
            ).status == 403  # no CSRF token  # fmt: skip
    path = await signup_link(client, sink, "late@example.com")
    await asyncio.sleep(2.2)  # the links' TTL here
    assert (await client.get(path)).status == 410
    for hostile in ("x" * 200, "a%3B%20Path%3D%2F", "%00"):
        assert (await client.get("/signup/" + hostile)).status == 410
    assert await FreeSignups(client.keys.redis, Lifecycle(client.keys, WallClock()), 2).customer_of(  # type: ignore[attr-defined]
        "late@example.com") is None  # fmt: skip


async def test_manage_billing_opens_a_customer_portal_session_for_the_signed_in_customer(portal):
    client, _, customer = portal
    assert (await client.post("/billing", allow_redirects=False)).status == 303  # signed out
    signed_in(client, customer)
    html = await (await client.get("/dashboard")).text()
    assert "Manage billing" not in html  # no subscription on this account
    assert (await client.post("/billing", data={"csrf": "forged"})).status == 403
    r = await client.post("/billing", data={"csrf": csrf_of(html)}, allow_redirects=False)
    assert r.status == 303 and "/billing/bps_" in r.headers["location"]
    async with client.session.get(r.headers["location"]) as page:
        assert page.status == 200 and "ada@example.com" in await page.text()
    signed_in(client, "free_nobody")  # not a Stripe customer: a clear error, not a 500
    html = await (await client.get("/dashboard")).text()
    r = await client.post("/billing", data={"csrf": csrf_of(html)})
    assert r.status == 502 and "Billing is unavailable" in await r.text()


async def test_stripe_or_redis_away_gives_a_503_page_not_a_500(portal, monkeypatch):
    client, _, _ = portal
    app_obj = portal_app(client)

    async def away(address: str) -> list[str]:
        raise ConnectionError("Stripe is unreachable")

    monkeypatch.setattr(app_obj, "accounts", away)
    signed_in(client, "cus_any")
    r = await client.get("/dashboard")
    assert r.status == 503 and "Something went wrong" in await r.text()
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    # Sign-in looks up the address after answering: the same answer, the failure logged.
    monkeypatch.setattr(app_obj, "customers", away)
    r = await client.post("/signin", data={"email": "ada@example.com", "csrf": await form(client)})
    assert r.status == 200 and "is on its way" in await r.text()


def portal_app(client: TestClient) -> PortalApp:
    return next(iter(client.server.app.router.routes())).handler.__self__  # type: ignore[no-any-return]


async def test_the_sign_in_answer_does_not_wait_for_the_customer_lookup(portal, monkeypatch):
    """A stranger cannot tell a customer's address by how long the answer takes: the lookup
    (Stripe) and the mail happen after it. Here the lookup never ends; the answer comes."""
    client, _, _ = portal
    never = asyncio.Event()

    async def stuck(address: str) -> list[str]:
        await never.wait()
        return []

    monkeypatch.setattr(portal_app(client), "customers", stuck)
    r = await asyncio.wait_for(client.post("/signin", data={"email": "ada@example.com",
                                                            "csrf": await form(client)}), 5)  # fmt: skip
    assert r.status == 200 and "is on its way" in await r.text()
    never.set()


async def test_an_address_of_two_customers_gets_a_link_for_each(portal, standin):
    """Both accounts are offered; each link signs in as its own customer."""
    client, sink, first = portal
    _, stripe, _ = standin
    second = (await stripe.v1.customers.create_async({"email": "ada@example.com"})).id
    await client.keys.create("pro", second)  # type: ignore[attr-defined]
    await client.post("/signin", data={"email": "ada@example.com", "csrf": await form(client)})
    ((_, body),) = await mails(sink)
    links = dict(re.findall(rf"Account (\S+): {URL}(/signin/\S+)", body))
    assert set(links) == {first, second}
    for customer, path in links.items():
        await client.get(path)
        html = await (await client.get("/signin/confirm")).text()
        r = await client.post(
            "/signin/confirm", data={"csrf": csrf_of(html)}, allow_redirects=False
        )
        session = Sessions("0123456789abcdef-secret", 3600).load(r.cookies[COOKIE].value)
        assert session is not None and session.customer == customer


async def test_a_cookie_that_is_not_ascii_is_no_session_not_a_500(portal):
    client, _, _ = portal
    for value in ("é.x.1.0.sig", "a.b.9999999999.0.☃"):
        client.session.cookie_jar.clear()
        r = await client.get(
            "/", headers={"Cookie": f"{COOKIE}={value}".encode().decode("latin-1")}
        )
        assert r.status == 200


async def test_per_client_limits_read_x_forwarded_for_at_the_trusted_hops(portal):
    """Behind one proxy, each client has its own sign-in limit; with no trusted hop, a
    client's own X-Forwarded-For is ignored (every value shares the peer's limit)."""
    client, _, _ = portal
    app = portal_app(client)
    app.links.per_ip = 2

    async def ask(forwarded: str) -> int:
        r = await client.post("/signin", data={"email": f"{forwarded}@example.com",
                                               "csrf": await form(client)},
                              headers={"X-Forwarded-For": forwarded})  # fmt: skip
        return r.status

    assert [await ask(f"10.0.0.{i}") for i in range(3)] == [200, 200, 429]  # 0 hops: the peer
    app.trusted_hops = 1
    assert [await ask(f"203.0.113.{i}") for i in range(3)] == [200, 200, 200]
    assert [await ask("198.51.100.7") for _ in range(3)] == [200, 200, 429]
