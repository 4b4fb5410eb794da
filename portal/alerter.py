"""Usage alerts, raised and delivered: a loop in every portal process.

Each pass (one per interval, by whichever portal process takes it) finds accounts (SCAN) whose
quota count reached a threshold (portal/alerts.py) and raises each alert once: HSETNX of its
field in the account's ``alerts`` hash, so processes and restarts agree on one alert per
account, period and threshold. Delivery then works from that hash: the email to the customer
and the signed POST to the operator's URL, each marked sent once it succeeds. A failed channel
is retried with backoff (``retry_s`` doubling, at most 10 min apart) up to ``attempts`` times,
then marked failed and logged as ``alert_undelivered`` (error): never dropped silently. A short
lock per alert keeps two processes from sending it at once: the record is read again once the
lock is held (another process may have delivered it since this one listed it), and written back
with the lock released in one script (tollway/lua/alert_settle.lua) only while the lock is
still this process's. A process that dies between sending and marking sends it again (the same
id, for the receiver to drop): alerts are at least once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import aiohttp

from portal import alerts, credit_alerts
from portal.alerts import ID_HEADER, SIGNATURE_HEADER, Alert, due, sign
from portal.credit_alerts import CreditAlert
from portal.dashboard import card
from portal.mail import Mailer
from portal.metrics import ALERTS
from portal.passes import every, owner
from tollway import schema, scripts
from tollway.accounts import Accounts
from tollway.credits import Credits
from tollway.key_store import KeyNotFound, KeyStore, text
from tollway.logs import fields
from tollway.scan import tags_by_suffix
from tollway.scripts import Result
from tollway.tiers import TierTable

log = logging.getLogger("tollway.portal.alerts")
KEEP_S = 400 * 86400  # an alerts hash outlives a yearly period
LOCK_MS = 30_000
EmailOf = Callable[[str], Awaitable[str | None]]  # a customer -> their address
AnyAlert = Alert | CreditAlert


def alert_of(record: dict[str, Any]) -> AnyAlert:
    """The alert a stored record is of: a usage alert, or a prepaid balance's."""
    if record.get("kind") == credit_alerts.KIND:
        return CreditAlert(**record["alert"])
    return Alert(**record["alert"])


def email(alert: AnyAlert) -> tuple[str, str]:
    """The customer's email (subject, text) of ``alert``."""
    if isinstance(alert, CreditAlert):
        return credit_alerts.email(alert)
    return alerts.email(alert)


class Alerter:
    def __init__(
        self,
        keys: KeyStore,
        tiers: Callable[[], TierTable],
        mailer: Mailer,
        email_of: EmailOf,
        webhook_url: str,
        webhook_secret: str,
        attempts: int,
        retry_s: float,
    ) -> None:
        self.redis: Any = keys.redis
        self.accounts = Accounts(keys)
        self.tiers = tiers
        self.mailer = mailer
        self.email_of = email_of
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.attempts = attempts
        self.retry_s = retry_s
        self.owner = owner()
        self._settle = scripts.register(self.redis, "alert_settle")
        self.http: aiohttp.ClientSession | None = None
        # Each account's (q_used, q_period) when last evaluated: an idle account costs one
        # HMGET a pass, not a read of its keys.
        self._seen: dict[str, tuple[str, str]] = {}
        self._balances: dict[str, int] = {}  # and each prepaid account's balance

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """A pass every ``interval_s`` until ``stop``, made by one portal process of however
        many: the one that takes ``alert-pass`` (portal/passes.py)."""
        try:
            await every(
                self.redis,
                schema.ALERT_PASS,
                self.owner,
                interval_s,
                stop,
                self.run_once,
                log,
                "alert_pass_failed",
            )
        finally:
            await self.close()

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None

    async def run_once(self, now: int | None = None) -> None:
        t = int(time.time()) if now is None else now
        found = await tags_by_suffix(self.redis, ("account", "alerts"), f"{schema.PREFIX}:{{*}}:a*")
        hashes = found["alerts"]
        for account in sorted(found["account"]):
            if await self.raise_due(account, t):
                hashes.add(account)
            if await self.raise_credits_due(account, t):
                hashes.add(account)
        for account in sorted(hashes):
            await self.deliver(account, t)

    async def raise_due(self, account: str, now: int) -> bool:
        """Raise the account's alerts now due; True if it has any raised."""
        used_raw, period_raw = await self.redis.hmget(
            schema.account_state(account), "q_used", "q_period"
        )
        if not used_raw or int(used_raw) <= 0:
            return False
        seen = (text(used_raw), text(period_raw or ""))
        if self._seen.get(account) == seen:  # no new use since this process last looked
            return False
        raised = await self._raise(account, int(period_raw or 0), now)
        self._seen[account] = seen  # after: a pass that failed half-way looks again
        return raised

    async def raise_credits_due(self, account: str, now: int) -> bool:
        """Raise a prepaid account's balance alerts now due (credit_alerts.py); True if any."""
        tier_name, balance_raw, customer = await self.redis.hmget(
            schema.account_state(account), "tier", "credits", "customer"
        )
        tier = self.tiers().get(text(tier_name)) if tier_name else None
        if tier is None or not tier.prepaid:
            return False
        balance = int(balance_raw or 0)
        if self._balances.get(account) == balance:  # unchanged since this process looked
            return False
        levels = credit_alerts.due(balance, tier.credits_per_request, tier.low_credits)
        if not levels:
            return False
        epoch = await Credits(self.redis).last_top_up(account)
        for level, threshold in levels:
            alert = CreditAlert(
                account, text(customer or account), tier.name, level, balance, threshold, epoch
            )
            await self._store(account, alert, now, {"kind": credit_alerts.KIND})
        self._balances[account] = balance  # after: a pass that failed half-way looks again
        return True

    async def _store(self, account: str, alert: AnyAlert, now: int, extra: dict[str, Any]) -> None:
        """Raise ``alert`` once: its record, pending on each channel, unless it has one."""
        record = {
            **extra,
            "alert": asdict(alert),
            "created": now,
            "attempts": 0,
            "next_at": now,
            "email": "pending",
            "webhook": "pending" if self.webhook_url else "off",
            "error": "",
        }
        name = schema.alerts(account)
        if await self.redis.hsetnx(name, alert.field, json.dumps(record)):
            await self.redis.expire(name, KEEP_S)
            log.info("alert_raised", extra=fields(alert=alert.id))

    async def _raise(self, account: str, start: int, now: int) -> bool:
        try:
            view = await self.accounts.show(account)
        except KeyNotFound:
            return False
        c = card(view, self.tiers())
        if c.status in ("canceled", "revoked") or not view.keys:
            return False
        length = c.period[1] - c.period[0]
        customer = view.plan.get("customer") or view.keys[0].customer
        raised = False
        for threshold in due(view.quota_used, c.quota):
            alert = Alert(
                account,
                customer,
                c.tier,
                threshold,
                view.quota_used,
                c.quota,
                start,
                start + length,
            )
            await self._store(account, alert, now, {})
            raised = True
        return raised

    async def deliver(self, account: str, now: int) -> None:
        name = schema.alerts(account)
        for field, raw in (await self.redis.hgetall(name)).items():
            if _due(account, text(field), raw, now) is None:
                continue
            lock = schema.alert_lock(account, text(field))
            if not await self.redis.set(lock, self.owner, nx=True, px=LOCK_MS):
                continue  # another process is on it
            written = ""
            try:
                # Again, under the lock: another process may have delivered it meanwhile.
                record = _due(account, text(field), await self.redis.hget(name, field), now)
                if record is not None:
                    await self._attempt(record, now)
                    written = json.dumps(record)
            finally:
                reply = await self._settle(
                    keys=[name, lock], args=[self.owner, text(field), written]
                )
                ours = scripts.result(reply) is Result.DONE
                if written and not ours:
                    log.warning("alert_lock_lost", extra=fields(account=account, field=text(field)))

    async def _attempt(self, record: dict[str, Any], now: int) -> None:
        alert = alert_of(record)
        errors = []
        for channel, send in (("email", self._email), ("webhook", self._webhook)):
            if record[channel] != "pending":
                continue
            try:
                await send(alert, record["created"])
            except Exception as exc:  # SMTP, HTTP, DNS: each is retried
                errors.append(f"{channel}: {exc!r}"[:300])
                continue
            record[channel] = "sent"
            ALERTS.labels(channel, "sent").inc()
            log.info("alert_sent", extra=fields(alert=alert.id, channel=channel))
        if not errors:
            return
        record["attempts"] += 1
        record["error"] = "; ".join(errors)
        if record["attempts"] >= self.attempts:
            for channel in ("email", "webhook"):
                if record[channel] == "pending":
                    record[channel] = "failed"
                    ALERTS.labels(channel, "failed").inc()
            log.error(
                "alert_undelivered",
                extra=fields(alert=alert.id, attempts=record["attempts"], error=record["error"]),
            )
            return
        record["next_at"] = now + min(600, self.retry_s * 2 ** (record["attempts"] - 1))
        log.warning(
            "alert_retry",
            extra=fields(alert=alert.id, attempts=record["attempts"], error=record["error"]),
        )

    async def _email(self, alert: AnyAlert, created: int) -> None:
        address = await self.email_of(alert.customer)
        if address is None:
            raise LookupError(f"no email address for {alert.customer}")
        subject, text_ = email(alert)
        await self.mailer.send(address, subject, text_)

    async def _webhook(self, alert: AnyAlert, created: int) -> None:
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        raw = alerts.body(alert, created)
        headers = {
            "content-type": "application/json",
            ID_HEADER: alert.id,
            SIGNATURE_HEADER: sign(raw, self.webhook_secret, int(time.time())),
        }
        async with self.http.post(self.webhook_url, data=raw, headers=headers) as r:
            if not 200 <= r.status < 300:
                raise RuntimeError(f"HTTP {r.status}")


async def stored(redis: Any) -> list[dict[str, Any]]:
    """Every alert record (``tollway portal alerts``), with its id: newest period first."""
    out = []
    found = await tags_by_suffix(redis, ("alerts",), f"{schema.PREFIX}:{{*}}:alerts")
    for account in found["alerts"]:
        for raw in (await redis.hgetall(schema.alerts(account))).values():
            try:
                record = json.loads(text(raw))
                out.append({"id": alert_of(record).id, **record})
            except (ValueError, KeyError, TypeError):
                continue  # alert_unreadable, logged by the loop
    return sorted(out, key=lambda r: (-r["alert"].get("period_start", r["created"]), r["id"]))


async def retry(redis: Any, alert_id: str) -> bool:
    """Make a failed alert's failed channels pending again, with fresh attempts: the portal's
    loop sends them on its next pass. False if no such alert, or nothing of it failed."""
    for record in await stored(redis):
        if record["id"] != alert_id:
            continue
        failed = [c for c in ("email", "webhook") if record[c] == "failed"]
        if not failed:
            return False
        del record["id"]
        alert = alert_of(record)
        record.update({c: "pending" for c in failed}, attempts=0, next_at=0)
        await redis.hset(schema.alerts(alert.account), alert.field, json.dumps(record))
        return True
    return False


def _due(account: str, field: str, raw: Any, now: int) -> dict[str, Any] | None:
    """The alert's record if a channel waits and its next attempt is due, else None."""
    if raw is None:
        return None
    try:
        record: dict[str, Any] = json.loads(text(raw))
        waiting = "pending" in (record["email"], record["webhook"])
        return record if waiting and record["next_at"] <= now else None
    except (ValueError, KeyError, TypeError):  # not written by us: left for a person
        log.error("alert_unreadable", extra=fields(account=account, field=field))
        return None
