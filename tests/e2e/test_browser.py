"""The portal in a real browser: headless Chromium from Debian (scripts/ensure-chromium.sh,
run by `make test`), driven by Playwright on that executable, against the whole stack (real
Envoy, authz, webhook service, metering, Redis, the Stripe stand-in, the dev SMTP sink).

One walk, as a customer would: pricing → Subscribe → the stand-in's Checkout → the key shown
once → a call through Envoy → sign-in by the link the SMTP sink received → the usage chart →
rotate with an overlap → 80 % of the quota: one email and one signed operator webhook →
Manage billing → cancel → the dashboard says canceled and Envoy answers 401. On the way:
hostile input refused with nothing changed, and accessibility checks on every page. A
screenshot of each page is saved under the test's temp dir (the path is printed); with
TOLLWAY_SCREENSHOTS=<dir> they are copied there too (docs/portal/ holds the README's).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devkit.seed import seed_prices
from devkit.stack import free_port
from portal.alerts import ID_HEADER, SIGNATURE_HEADER, verify
from portal.sessions import COOKIE
from portal.signin import digest
from tests.e2e.conftest import Edge, running_edge
from tollway import schema
from tollway.tiers import parse_tiers

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="needs chromium: scripts/ensure-chromium.sh"),
]
TIERS = """
[tiers.free]
description = "Try the API."
requests_per_second = 100.0
burst = 100
monthly_quota = 100
over_quota = "block"
free_signup = true

[tiers.starter]
description = "A small paid plan with a hard cap."
requests_per_second = 100.0
burst = 100
monthly_quota = 20
over_quota = "block"
stripe_prices = ["tollway_starter"]
price_amount = 900

[tiers.pro]
description = "Production use."
requests_per_second = 100.0
burst = 100
monthly_quota = 0
over_quota = "bill"
stripe_prices = ["tollway_pro"]
price_amount = 2900
"""
ALERT_SECRET = "browser-test-alert-secret"
EMAIL = "grace@example.com"
# As the machine's probe starts Chromium: no background traffic to a network that is closed.
ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip

# Accessibility, measured in the page: every control labelled, text contrast at least 4.5:1
# (WCAG AA) against its effective background, nothing wider than the viewport.
A11Y_JS = """() => {
  const problems = [];
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    if (!el.labels.length && !el.getAttribute('aria-label')) problems.push('unlabelled ' + el.outerHTML.slice(0, 80));
  }
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => { const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const bg = el => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3); } return [255, 255, 255]; };
  for (const el of document.querySelectorAll('h1,h2,p,a,button,label,td,th,li,caption,strong,span,code,pre,summary')) {
    if (!el.textContent.trim() || !el.getClientRects().length) continue;
    const fg = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
    const ratio = (Math.max(fg, b) + 0.05) / (Math.min(fg, b) + 0.05);
    if (ratio < 4.5) problems.push('contrast ' + ratio.toFixed(2) + ': ' + el.outerHTML.slice(0, 80));
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1)
    problems.push('wider than the viewport: ' + document.documentElement.scrollWidth);
  return problems;
}"""


class Operator:
    """The operator's alert URL: records each POST (body, headers, the status it answered);
    answers 503 to the first ``failing`` of them, 200 to the rest."""

    def __init__(self, failing: int = 0) -> None:
        self.got: list[tuple[bytes, dict[str, str], int]] = []
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = 503 if len(got) < failing else 200
                got.append((raw, dict(self.headers.items()), status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def until(check: Callable[[], Any], what: str, timeout_s: float = 20.0) -> Any:
    """Poll ``check`` (every 0.2 s) until it returns something truthy; fail after the time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def mail_lines(edge: Edge) -> list[str]:
    return [line.split(" | ", 1)[1] for line in list(edge.logs) if line.startswith("mailsink | ")]


def newest_link(edge: Edge, kind: str, seen: int) -> str:
    def find() -> str | None:
        links = [m.group(0) for line in mail_lines(edge)
                 for m in [re.search(rf"http://\S+/{kind}/\S+", line)] if m]  # fmt: skip
        return links[-1] if len(links) > seen else None

    return str(until(find, f"a /{kind}/ link in the SMTP sink"))


class Shots:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "screenshots"
        self.dir.mkdir()
        self.n = 0

    def take(self, page: Any, name: str) -> None:
        self.n += 1
        page.screenshot(path=str(self.dir / f"{self.n:02d}-{name}.png"), full_page=True)

    def publish(self) -> None:
        print(f"\nportal screenshots: {self.dir}")
        target = os.environ.get("TOLLWAY_SCREENSHOTS")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            for png in self.dir.glob("*.png"):
                shutil.copy(png, Path(target) / png.name)


def off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn`` in a thread of its own: Playwright's sync API keeps an event loop running in
    this one, so asyncio.run (the stand-in's seeding, Edge.issue) cannot run here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def accessible(page: Any) -> None:
    assert page.evaluate(A11Y_JS) == [], page.url


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.timeout(300)
def test_a_customer_walks_the_portal_in_a_real_browser(tmp_path: Path, browser: Any) -> None:
    operator = Operator(failing=1)  # the operator's URL fails once: the alert is retried
    env = {"TOLLWAY_ALERT_WEBHOOK_URL": operator.url, "TOLLWAY_ALERT_WEBHOOK_SECRET": ALERT_SECRET,
           "TOLLWAY_ALERT_INTERVAL_S": "0.5", "TOLLWAY_ALERT_RETRY_S": "0.5"}  # fmt: skip
    shots = Shots(tmp_path)
    try:
        with running_edge(tmp_path, TIERS, env=env, portal=True) as edge:
            off_loop(asyncio.run, seed_prices(edge.stack.standin_url, parse_tiers(TIERS, "t")))
            # A phone-sized window: the layout must work at 375 px.
            context = browser.new_context(viewport={"width": 375, "height": 800})
            try:
                walk(edge, context.new_page(), operator, shots, browser)
            finally:
                context.close()
    finally:
        operator.close()
        shots.publish()


def walk(edge: Edge, page: Any, operator: Operator, shots: Shots, browser: Any) -> None:
    portal = f"http://127.0.0.1:{edge.stack.ports.portal}"
    page.set_default_timeout(15_000)

    # 1. Pricing, from the tier table; reached and used by keyboard.
    page.goto(portal + "/")
    assert page.get_by_role("heading", name="starter").is_visible()
    assert page.get_by_role("button", name="Sign up for free").is_visible()
    accessible(page)
    shots.take(page, "pricing")
    page.keyboard.press("Tab")  # the first stop: the brand link
    for _ in range(12):  # Tab on to the starter plan's email field
        if page.evaluate("document.activeElement.id") == "email-starter":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "email-starter"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), "a focused field shows where the focus is"
    page.keyboard.type(EMAIL)

    # 2. Subscribe (Enter submits the focused form) → the stand-in's Checkout → pay.
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/pay/cs_test_.*"))
    accessible(page)
    shots.take(page, "checkout")
    # Abandoning Checkout would lead back to the pricing page.
    assert page.get_by_role("link", name="Cancel").get_attribute("href") == portal + "/"
    page.get_by_role("button", name="Pay and subscribe").click()

    # 3. The key, shown once.
    page.wait_for_url(re.compile(r".*/welcome\?session_id=.*"))
    key = page.locator("#key").input_value()
    assert key.startswith("tw_live_") and "only time it is shown" in page.content()
    assert f"x-api-key: {key}" in page.locator("pre").inner_text()
    accessible(page)
    shots.take(page, "key-shown-once")
    page.reload()
    assert "already shown" in page.content() and key not in page.content()

    # 4. The key works through Envoy.
    assert edge.get("/v1/things", key).status == 200

    # 5. Sign in through the link the SMTP sink received.
    page.goto(portal + "/signin")
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_role("button", name="Email me a sign-in link").click()
    assert "is on its way" in page.content()
    link = newest_link(edge, "signin", 0)
    page.goto(link)  # the link only asks: whose account it opens, and a button to go on
    page.wait_for_url(portal + "/signin/confirm")
    assert f"This link signs in as <strong>{EMAIL}</strong>" in page.content()
    accessible(page)
    shots.take(page, "signin-confirm")
    page.get_by_role("button", name=f"Sign in as {EMAIL}").click()
    page.wait_for_url(portal + "/dashboard")
    page.goto(link)  # replayed: refused
    assert "This link does not work" in page.content()
    page.goto(portal + "/dashboard")

    # 6. The usage chart shows that request, today.
    today = datetime.now(UTC).strftime("%m-%d")
    chart = page.locator("svg.chart").first.get_attribute("aria-label") or ""
    assert re.search(rf"{today} 1(,|$)", chart), chart  # that one request, today
    assert "Plan: starter" in page.content() and "(active)" in page.content()
    accessible(page)
    shots.take(page, "dashboard")

    hostile(edge, page, browser, portal)

    # 7. Rotate with an hour's overlap: both keys work meanwhile.
    page.goto(portal + "/dashboard")
    page.get_by_label("Old key works for").select_option("3600")
    page.get_by_role("button", name="Rotate").click()
    new_key = page.locator("#key").input_value()
    assert new_key.startswith("tw_live_") and new_key != key
    accessible(page)
    shots.take(page, "rotated")
    assert edge.get("/v1/things", key).status == 200  # in its overlap
    assert edge.get("/v1/things", new_key).status == 200

    # 8. 80 % of the quota (20): 16 requests in all → one email, one signed webhook (which the
    # operator's URL refuses once: it comes again, the same alert, and is then accepted).
    for _ in range(16 - 3):
        assert edge.get("/v1/things", new_key).status == 200
    until(lambda: any("You have used 80%" in line for line in mail_lines(edge)), "the alert email")
    until(lambda: len(operator.got) == 2, "the operator's alert webhook, retried")
    time.sleep(2.0)  # four more alert passes: nothing is sent again
    assert sum("You have used 80%" in line for line in mail_lines(edge)) == 1
    assert [status for *_, status in operator.got] == [503, 200]
    assert operator.got[0][0] == operator.got[1][0]  # the same alert, the same body
    raw, headers, _ = operator.got[1]
    assert verify(raw, headers[SIGNATURE_HEADER], ALERT_SECRET, int(time.time()))
    event = json.loads(raw)
    assert event["id"] == headers[ID_HEADER]
    assert (event["data"]["threshold_percent"], event["data"]["used"],
            event["data"]["quota"]) == (80, 16, 20)  # fmt: skip
    page.goto(portal + "/dashboard")
    assert "80% used" in page.content()
    shots.take(page, "dashboard-80-percent")

    # 9. Manage billing → cancel at the period's end (Stripe's default): the dashboard says when
    # access ends, and the key still works; then cancel now: the dashboard says canceled, and
    # Envoy answers 401.
    page.get_by_role("button", name="Manage billing").click()
    page.wait_for_url(re.compile(r".*/billing/bps_.*"))
    assert "active" in page.locator(".sub-status").inner_text()
    accessible(page)
    shots.take(page, "manage-billing")
    page.get_by_role("button", name="Cancel at period end").click()
    assert page.get_by_role("button", name="Renew subscription").is_visible()
    back_until(page, portal, "Canceled: access ends", "the cancellation at the period's end")
    assert "(active)" in page.content()
    shots.take(page, "cancels-at-period-end")
    assert edge.get("/v1/things", new_key).status == 200  # until the period ends
    page.get_by_role("button", name="Manage billing").click()
    page.wait_for_url(re.compile(r".*/billing/bps_.*"))
    page.get_by_role("button", name="Cancel subscription now").click()
    assert "canceled" in page.locator(".sub-status").inner_text()
    back_until(page, portal, "(canceled)", "the cancellation")
    shots.take(page, "canceled")
    until(lambda: edge.get("/v1/things", new_key).status == 401, "401 for the canceled key")
    assert edge.get("/v1/things", key).status == 401

    # Signing out ends every session of the customer: a copy of the cookie (stolen, or on
    # another device) no longer opens the dashboard.
    stolen = browser.new_context()
    try:
        stolen.add_cookies([c for c in page.context.cookies() if c["name"] == COOKIE])
        thief = stolen.new_page()
        thief.goto(portal + "/dashboard")
        assert thief.url == portal + "/dashboard"
        page.get_by_role("button", name="Sign out").click()
        thief.goto(portal + "/dashboard")
        assert thief.url.endswith("/signin")
    finally:
        stolen.close()

    # And the free plan, without Stripe: an address, the confirmation link, a key.
    page.goto(portal + "/")
    seen = sum("/signup/" in line for line in mail_lines(edge))
    page.locator("#email-free").fill("lin@example.com")
    page.get_by_role("button", name="Sign up for free").click()
    assert "Check your inbox" in page.content()
    page.goto(newest_link(edge, "signup", seen))  # it only asks: the plan, the address
    page.get_by_role("button", name="Confirm and show my key").click()
    free_key = page.locator("#key").input_value()
    shots.take(page, "free-signup-key")
    assert edge.get("/v1/things", free_key).status == 200


def back_until(page: Any, portal: str, text: str, what: str) -> None:
    """From the stand-in's billing page back to the dashboard, reloaded until it shows
    ``text``: Stripe's webhook for the change arrives in its own time."""
    page.get_by_role("link", name=re.compile("Return to")).click()
    page.wait_for_url(portal + "/dashboard")

    def shown() -> bool:
        page.reload()
        return text in page.content()

    until(shown, f"the dashboard to show {what}")


def hostile(edge: Edge, page: Any, browser: Any, portal: str) -> None:
    """Refused, with nothing changed: an expired sign-in link, a forged or missing CSRF token,
    another customer's key id in a form, a session cookie tampered with. (A replayed link is
    step 5's.)"""
    other_key, other_id = off_loop(edge.issue, "starter")
    other = schema.key_record(other_id, edge.accounts[other_id])
    mine = page.locator("input[name=key_id]").first.get_attribute("value")
    account = edge.redis.hget(schema.key_directory(str(mine)), "account")
    record = schema.key_record(str(mine), str(account))
    # An expired sign-in link: its token's record in Redis made to expire, as its TTL would.
    page.goto(portal + "/signin")
    seen = sum("/signin/" in line for line in mail_lines(edge))
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_role("button", name="Email me a sign-in link").click()
    link = newest_link(edge, "signin", seen)
    token = link.rstrip("/").rsplit("/", 1)[1]
    assert edge.redis.pexpire(schema.signin_token(digest(token)), 1)
    time.sleep(0.05)
    page.goto(link)
    assert "This link does not work" in page.content()
    # A forged CSRF token on the revoke form, then none at all.
    for forge in ("e => e.value = 'forged'", "e => e.remove()"):
        page.goto(portal + "/dashboard")
        page.evaluate(f"document.querySelectorAll('input[name=csrf]').forEach({forge})")
        page.get_by_role("button", name="Revoke").first.click()
        assert "Please try again" in page.content()
        assert edge.redis.hget(record, "status") == "active"
    # Another customer's key id in the revoke form (with a good token): 403.
    page.goto(portal + "/dashboard")
    page.evaluate(
        'id => document.querySelector(\'form[action="/keys/revoke"] '
        "input[name=key_id]').value = id",
        other_id,
    )
    page.get_by_role("button", name="Revoke").first.click()
    assert "Not your key" in page.content()
    assert (
        edge.redis.hget(other, "status") == "active"
        and edge.redis.hget(record, "status") == "active"
    )
    # A session cookie tampered with (its customer changed): treated as signed out.
    cookie = next(c for c in page.context.cookies() if c["name"] == COOKIE)
    sid, _, expires, generation, sig = cookie["value"].split(".")
    evil = browser.new_context()
    try:
        forged = ".".join([sid, "cus_someone", expires, generation, sig])
        evil.add_cookies([{**cookie, "value": forged}])
        tab = evil.new_page()
        tab.goto(portal + "/dashboard")
        assert tab.url.endswith("/signin")
    finally:
        evil.close()
    assert edge.get("/v1/things", other_key).status == 200
