"""Prometheus metrics for the metering daemon."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram


class MeteringMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else REGISTRY
        self.pending = Gauge(
            "tollway_metering_pending_windows",
            "Meter events still waiting after the last drain",
            registry=reg,
        )
        self.oldest_pending_age = Gauge(
            "tollway_metering_oldest_pending_seconds",
            "Age of the oldest unsent usage window",
            registry=reg,
        )
        self.sent = Counter(
            "tollway_metering_events_sent_total",
            "Meter events Stripe has (accepted, or already had: duplicate)",
            ["outcome"],
            registry=reg,
        )
        self.retries = Counter(
            "tollway_metering_retries_total", "Send attempts after the first", registry=reg
        )
        self.dead_letters = Counter(
            "tollway_metering_dead_letters_total",
            "Meter events Stripe refused for good",
            registry=reg,
        )
        self.access_log_silent = Gauge(
            "tollway_metering_access_log_silent",
            "1 while Envoy's access log has not reached the receiver within the grace: refunds "
            "are not being applied, and usage is billed as counted at check time",
            registry=reg,
        )
        self.drain_seconds = Histogram(
            "tollway_metering_drain_seconds", "Time one drain pass took", registry=reg
        )
