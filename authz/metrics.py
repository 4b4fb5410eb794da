"""Prometheus metrics for authz. Label values are ``Reason`` values, or ``ok``/``degraded``."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from authz.decision import Decision


class AuthzMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else REGISTRY
        self.decisions = Counter(
            "tollway_authz_decisions_total", "Check decisions by reason", ["reason"], registry=reg
        )
        self.dry_run = Counter(
            "tollway_authz_dry_run_denials_total",
            "Denials a dry-run tier would have made",
            ["reason"],
            registry=reg,
        )
        self.latency = Histogram(
            "tollway_authz_check_seconds",
            "Time to decide one check, in the servicer",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=reg,
        )
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
        self.store_pipelines = Counter(
            "tollway_authz_store_pipelines_total",
            "Pipelines sent to Redis: one round trip each, carrying the checks of one loop tick",
            registry=reg,
        )
        self.lease_owed = Gauge(
            "tollway_authz_lease_owed_requests",
            "Requests let through on leases and not yet counted in Redis",
            registry=reg,
        )
        self.tier_reloads = Counter(
            "tollway_authz_tier_reloads_total", "Tier table reloads", ["result"], registry=reg
        )
        self._ok = self.decisions.labels("ok")

    def observe(self, d: Decision, seconds: float) -> None:
        self.latency.observe(seconds)
        if d.reason is None:
            (self.decisions.labels("degraded") if d.degraded else self._ok).inc()
            if d.would_deny is not None:
                self.dry_run.labels(d.would_deny.value).inc()
        else:
            self.decisions.labels(d.reason.value).inc()
