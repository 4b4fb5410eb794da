"""Prometheus metrics for authz. Label values are ``Reason`` values, or ``ok``/``degraded``.

The three metrics touched on every check (decisions, dry-run denials, check latency) are kept
as plain counts on the event loop and turned into Prometheus families only when scraped
(``HotPath.collect``): prometheus_client's own Counter and Histogram take a lock and walk
label dictionaries on every update, a cost a plain count does not pay. The rest change rarely
and use prometheus_client directly.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Counts
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from authz.decision import Decision
from tollway import eviction

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class HotPath:
    """Per-check counts, updated without locks (one event loop) and read at scrape time."""

    def __init__(self) -> None:
        self.decisions: Counts[str] = Counts()
        self.dry_run: Counts[str] = Counts()
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: above every bound
        self.latency_sum = 0.0

    def observe(self, d: Decision, seconds: float) -> None:
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        if d.reason is None:
            self.decisions["degraded" if d.degraded else "ok"] += 1
            if d.would_deny is not None:
                self.dry_run[d.would_deny.value] += 1
        else:
            self.decisions[d.reason.value] += 1

    def collect(self) -> Iterator[Any]:
        decisions = CounterMetricFamily(
            "tollway_authz_decisions", "Check decisions by reason", labels=["reason"]
        )
        for reason, n in sorted(self.decisions.items()):
            decisions.add_metric([reason], n)
        yield decisions
        dry = CounterMetricFamily(
            "tollway_authz_dry_run_denials",
            "Denials a dry-run tier would have made",
            labels=["reason"],
        )
        for reason, n in sorted(self.dry_run.items()):
            dry.add_metric([reason], n)
        yield dry
        counts, total = list(self.buckets), 0
        cumulative = []
        for bound, n in zip((*map(str, LATENCY_BUCKETS), "+Inf"), counts, strict=True):
            total += n
            cumulative.append((bound, total))
        yield HistogramMetricFamily(
            "tollway_authz_check_seconds",
            "Time to decide one check, in the servicer",
            buckets=cumulative,
            sum_value=self.latency_sum,
        )


class AuthzMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else REGISTRY
        self.hot = HotPath()
        reg.register(self.hot)
        self.may_evict = eviction.gauge("authz", reg)
        self.store_errors = Counter(
            "tollway_authz_store_errors_total", "Checks the store could not answer", registry=reg
        )
        self.breaker_open = Gauge(
            "tollway_authz_breaker_open", "1 while the Redis circuit breaker is open", registry=reg
        )
        self.buffered_usage = Gauge(
            "tollway_authz_buffered_usage",
            "Requests counted in memory awaiting Redis",
            registry=reg,
        )
        self.spooled_foreign = Gauge(
            "tollway_authz_spooled_foreign_requests",
            "Requests in spool files of another store (or of none known) found at start: never"
            " loaded here; an operator moves them (tollway usage spool)",
            registry=reg,
        )
        self.store_pipelines = Counter(
            "tollway_authz_store_pipelines_total",
            "Pipelines sent to Redis: one round trip each, carrying the checks of one loop tick",
            registry=reg,
        )
        self.store_replies_lost = Counter(
            "tollway_authz_store_replies_lost_total",
            "Checks sent to Redis whose reply never came (connection broken or read timed out):"
            " Redis may have counted them although the request was refused",
            registry=reg,
        )
        self.answers_unheard = Counter(
            "tollway_authz_answers_unheard_total",
            "Checks allowed and counted after Envoy had given up on them (its timeout fired"
            " first: the HTTP connection closed, or the gRPC call cancelled): counted, but the"
            " request was not served",
            registry=reg,
        )
        self.lease_owed = Gauge(
            "tollway_authz_lease_owed_requests",
            "Requests let through on leases and not yet counted in Redis",
            registry=reg,
        )
        self.observe = self.hot.observe
