"""The access-log receiver: Envoy's gRPC access log in, refunds and reported amounts out.

Envoy streams one entry per request (``envoy.service.accesslog.v3.AccessLogService``, logger
``envoy.access_loggers.http_grpc``). An entry of a request authz counted carries authz's
signed usage stamp (tollway/usage_stamp.py); with the final status and response flags, the tier
decides (metering/outcomes.py):

- billed, no amount: nothing to do; usage stays as counted at check time;
- not billed: apply_log_entry.lua takes it off the window it was counted in (and its quota back,
  with the tier's refund_quota);
- billed with an amount the upstream reported: added to the window, for the usage meter;
- on a prepaid tier (README "Prepaid credits"): not billed, the credits its stamp says it
  spent go back to the balance; billed with an amount, ``credits_per_unit`` each come off it;
- and in every case, a request holding a concurrency slot (its stamp says so) frees it.

Each request applies once: its stamp's nonce (authz's own, never the client's x-request-id)
joins a set kept in the account's slot for the window, so an entry Envoy sends again (its
stream retry replays what it had buffered), or a second receiver gets, changes nothing. An
entry without a valid stamp (a denial, a forged stream) and one older than ``max_age_s``
(the set may be gone) change nothing either.

Envoy's own 503 when its ext_authz call timed out carries no stamp; authz keeps the stamp of
such a check under the request id (tw:{<id>}:unheard), and the entry refunds it.

It runs beside the metering daemon, as a process of its own (``tollway metering receive``):
it is stateless and serves every Envoy, so it scales and restarts apart from the drain, and
it keeps this work off authz, whose CPU is the check path's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from metering.metrics import ReceiverMetrics
from metering.outcomes import Entry, judge, read_entry
from metering.probes import serve_probes
from metering.settings import ReceiverSettings
from tollway import schema, scripts, tls
from tollway.logs import fields
from tollway.process import stop_on_signals
from tollway.redis_client import connect
from tollway.scripts import Result
from tollway.tier_source import TierSource
from tollway.tiers import TierTable
from tollway.usage_stamp import REQUEST_ID, Stamp, Stamper

log = logging.getLogger("tollway.metering.receiver")
HEARD_EVERY_S = 1.0  # how often the receiver notes in Redis that an Envoy is streaming to it
DRAIN_S = 3.0  # on SIGTERM: long enough for every stream's next flush (0.5 s in envoy.yaml)
SERVICE = "envoy.service.accesslog.v3.AccessLogService"  # as Envoy's health check names it
# Redis calls are retried here, not left to Envoy: Envoy does not resend a message the stream
# took. 0.1 s doubling to 2 s: about 20 s in all, then the stream fails.
ATTEMPTS = 14
# authz writes an unheard check's stamp when it finishes, which a stalled authz does after
# Envoy logged its 503: look now, then again, 7.5 s in all.
UNHEARD_WAITS_S = (0.0, 0.5, 1.0, 2.0, 4.0)
UNHEARD_PENDING = 10_000


@dataclass(frozen=True)
class Write:
    """One entry's apply_log_entry.lua call, and its metric label if it applies."""

    label: str
    keys: tuple[str, ...]
    args: tuple[str, ...]


class Receiver:
    """Applies entries to Redis; the gRPC servicer below only feeds it."""

    def __init__(
        self,
        redis: Any,
        tiers: Any,
        stamper: Stamper,
        metrics: ReceiverMetrics,
        window_s: int,
        max_age_s: int,
        amount_max: int,
    ) -> None:
        self.redis = redis
        self.tiers = tiers  # () -> TierTable
        self.stamper = stamper
        self.metrics = metrics
        self.window_s = window_s
        self.max_age_s = max_age_s
        self.amount_max = amount_max
        self._apply_entry = scripts.register(redis, "apply_log_entry")
        self.received = 0  # entries, since the start: logged on exit
        self.streams = 0  # Envoy streams open now
        self._looking: set[asyncio.Task[None]] = set()  # unheard checks being looked for

    async def load_script(self) -> None:
        """Load apply_log_entry.lua on every node before the first stream: otherwise the first
        message's entries all meet NOSCRIPT at once, and redis-py's cluster client, loading
        it for each, drops connections under them (seen in make test's cluster run)."""
        await self._retried(lambda: self.redis.script_load(self._apply_entry.script))

    async def entries(self, logs: list[Any]) -> None:
        """Apply one message's entries: each is read and judged without I/O, and the writes
        go out as one pipeline (README "What billing what was served costs"). Redis failures
        are retried (every entry applies once, so a retry is safe); past ATTEMPTS this raises,
        the stream fails, and the entries not applied stay billed as counted (their amounts
        are lost): logged."""
        table: TierTable = self.tiers()
        self.received += len(logs)
        planned = [self._plan(read_entry(e), table) for e in logs]
        writes = [p for p in planned if isinstance(p, Write)]
        applied = iter(await self._retried(lambda: self._write(writes)) if writes else [])
        for p in planned:
            label = p if isinstance(p, str) else (p.label if next(applied) else "duplicate")
            self.metrics.entries.labels(label).inc()

    async def note_heard(self, stop: asyncio.Event) -> None:
        """While an Envoy streams to this receiver, say so in Redis every second: the metering
        daemon reports the access log silent when no receiver has (metering/daemon.py)."""
        while not stop.is_set():
            if self.streams > 0:
                try:
                    await self.redis.set(schema.ACCESS_LOG_HEARD, int(time.time()))
                except Exception as exc:  # Redis away: the entries' own retries say more
                    log.warning("heard_note_failed", extra=fields(error=str(exc)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARD_EVERY_S)

    def _plan(self, e: Entry, table: TierTable) -> str | Write:
        """What one entry does: a metric label if it writes nothing, else its write."""
        if not e.stamp:
            if e.envoy_answered_for_authz and REQUEST_ID.match(e.request_id):
                return self._look_for_unheard(e)
            return "unstamped"
        stamp = self.stamper.read(e.stamp)
        if stamp is None:
            log.warning("forged_entry", extra=fields(request_id=e.request_id[:100]))
            return "forged"
        if stamp.at < time.time() - self.max_age_s:
            log.warning("stale_entry", extra=fields(request_id=e.request_id, at=stamp.at))
            return "stale"
        tier = table.get(stamp.tier)
        v = judge(e, tier, self.amount_max)
        if v.bad_amount is not None:
            self.metrics.bad_amounts.labels(v.bad_amount.value).inc()
            log.warning(
                "bad_usage_amount",
                extra=fields(
                    request_id=e.request_id, reason=v.bad_amount.value, value=(e.amount or "")[:40]
                ),
            )
        if not v.refund and v.amount == 0 and not stamp.slot:
            return "billed"
        per_unit = tier.credits_per_unit if tier is not None and tier.prepaid else 0
        return self._write_for(stamp, v.refund, v.refund_quota, v.amount, per_unit)

    def _look_for_unheard(self, e: Entry) -> str:
        """Envoy answered 503 itself as its ext_authz call timed out. If authz counted the
        check, it leaves the stamp under the request id when it finishes; that can be after
        Envoy logged the 503 (authz was stalled), so this looks a few times, apart from the
        stream. At most UNHEARD_PENDING at once: past that (authz down, every request a 503
        with no check behind it), an entry is not looked for."""
        if len(self._looking) >= UNHEARD_PENDING:
            return "unheard_unchecked"
        task = asyncio.ensure_future(self._unheard(e))
        self._looking.add(task)
        task.add_done_callback(self._looking.discard)
        return "envoy_timeout"

    async def _unheard(self, e: Entry) -> None:
        text = None
        for wait in UNHEARD_WAITS_S:
            await asyncio.sleep(wait)
            try:
                text = await self.redis.get(schema.unheard(e.request_id))
            except Exception as exc:
                log.warning("unheard_lookup_failed", extra=fields(error=str(exc)))
            if text:
                break
        stamp = self.stamper.read(text) if text else None
        if stamp is None:
            return
        tier = self.tiers().get(stamp.tier)
        refund_quota = tier.refund_quota if tier is not None else True
        try:
            done = await self.apply(stamp, True, refund_quota, 0)
        except Exception as exc:
            log.error(
                "unheard_refund_failed", extra=fields(request_id=e.request_id, error=str(exc))
            )
            return
        self.metrics.entries.labels("unheard_refunded" if done else "duplicate").inc()

    def _write_for(
        self, s: Stamp, refund: bool, refund_quota: bool, amount: int, per_unit: int = 0
    ) -> Write:
        """apply_log_entry.lua's keys and arguments for one request; ``per_unit``: the
        credits a reported unit costs on a prepaid tier (its amount then goes to no meter)."""
        window = s.window(self.window_s)
        # Usage counted under a key id (authz did not know its account then) has no quota in
        # its slot to give back to: only the usage is refunded.
        refund_quota = refund_quota and s.source != s.key_id
        quota = schema.account_state(s.source)
        keys = (
            schema.usage(s.source),
            quota,
            schema.logged(s.source, window),
            schema.in_flight(s.source),
            schema.credit_hours(s.source),
        )
        args = (
            s.nonce,
            str(window),
            str(s.at),
            "1" if refund else "0",
            "1" if refund_quota else "0",
            s.key_id,
            str(amount),
            str(self.max_age_s + self.window_s),
            "1" if s.slot else "0",
            str(s.credits),
            str(amount * per_unit),
        )
        label = "refunded" if refund else "amount" if amount else "slot_freed"
        return Write(label, keys, args)

    async def apply(self, s: Stamp, refund: bool, refund_quota: bool, amount: int) -> bool:
        """apply_log_entry.lua for one request; False if it was applied before."""
        write = self._write_for(s, refund, refund_quota, amount)
        (done,) = await self._retried(lambda: self._write([write]))
        return bool(done)

    async def _write(self, writes: list[Write]) -> list[bool]:
        """Run apply_log_entry.lua for each write; whether each applied."""
        replies = await scripts.run_many(self._apply_entry, [(w.keys, w.args) for w in writes])
        return [scripts.result(r) is Result.DONE for r in replies]

    async def _retried(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """``call()``, again after a Redis failure (it is idempotent), backing off."""
        for attempt in range(ATTEMPTS):
            try:
                return await call()
            except Exception as exc:
                if attempt == ATTEMPTS - 1:
                    raise
                log.warning("redis_retry", extra=fields(attempt=attempt + 1, error=str(exc)))
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        raise AssertionError("unreachable")


class AccessLogServicer(als_pb2_grpc.AccessLogServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        # Set on SIGTERM: each stream ends right after its next message is applied. Envoy
        # flushes on a timer (0.5 s in envoy.yaml), so it sees the stream end before it sends
        # again, keeps what it has buffered, and sends it to the next receiver: a restart
        # loses nothing. (A crash can lose what was in flight: Envoy's access log has no
        # acknowledgements. Those requests stay billed as counted.)
        self.draining = False

    async def StreamAccessLogs(self, requests: Any, context: Any) -> Any:
        metrics = self.receiver.metrics
        metrics.streams.inc()
        self.receiver.streams += 1
        try:
            async for message in requests:
                if message.HasField("http_logs"):
                    await self.receiver.entries(list(message.http_logs.log_entry))
                if self.draining:
                    break
        except Exception as exc:  # Redis trouble: end the stream; Envoy opens a new one
            log.error("access_log_stream_failed", extra=fields(error=str(exc)))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "cannot apply entries now")
        finally:
            metrics.streams.dec()
            self.receiver.streams -= 1
        return als_pb2.StreamAccessLogsResponse()


async def serve(settings: ReceiverSettings) -> None:
    tiers = TierSource(settings.tiers)
    redis = connect(settings.redis_url, timeout_s=5.0)
    metrics = ReceiverMetrics()
    receiver = Receiver(
        redis,
        tiers,
        Stamper(settings.usage_log_secret),
        metrics,
        settings.usage_window_s,
        settings.max_age_s,
        settings.amount_max,
    )
    await receiver.load_script()
    server = grpc.aio.server()
    servicer = AccessLogServicer(receiver)
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(servicer, server)
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    await checks.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    port = tls.add_port(server, f"{settings.host}:{settings.port}", settings)
    if port == 0:
        raise OSError(f"cannot bind {settings.host}:{settings.port}")
    runner = await serve_probes(settings.host, settings.metrics_port)
    await server.start()
    stop = stop_on_signals(tiers)
    log.info("serving", extra=fields(port=port, metrics_port=settings.metrics_port))
    heard = asyncio.ensure_future(receiver.note_heard(stop))
    await stop.wait()
    await heard
    log.info("stopping")
    # NOT_SERVING first: Envoy's health check (every 0.5 s) sends new streams elsewhere; then
    # each open stream ends after its next message, and the port closes.
    await checks.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    servicer.draining = True
    await asyncio.sleep(DRAIN_S / 3)
    await server.stop(grace=DRAIN_S)
    await runner.cleanup()
    await redis.aclose()
    log.info("stopped", extra=fields(entries=receiver.received))
