"""Prometheus metrics for the metering daemon and the access-log receiver."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from tollway import eviction


class MeteringMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else REGISTRY
        self.may_evict = eviction.gauge("metering", reg)
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


class ReceiverMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else REGISTRY
        self.entries = Counter(
            "tollway_accesslog_entries_total",
            "Access-log entries, by what they did: billed (as counted), refunded, amount, slot_freed, "
            "duplicate, unstamped (not counted by authz), forged, stale; envoy_timeout (Envoy "
            "answered 503 as authz was late: looked for), unheard_refunded (authz had counted "
            "it: refunded), unheard_unchecked (too many to look for)",
            ["result"],
            registry=reg,
        )
        self.bad_amounts = Counter(
            "tollway_accesslog_bad_amounts_total",
            "Reported usage amounts ignored, never billed, by why",
            ["reason"],
            registry=reg,
        )
        self.streams = Gauge(
            "tollway_accesslog_streams", "Envoy access-log streams open", registry=reg
        )
