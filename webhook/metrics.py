"""Prometheus metrics for the webhook service."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from tollway import eviction


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else REGISTRY
        self.may_evict = eviction.gauge("webhook", reg)
        self.events = Counter(
            "tollway_webhook_events_total",
            "Verified events by type (handled types only; the rest count as other) and outcome",
            ["type", "outcome"],
            registry=reg,
        )
        self.rejected = Counter(
            "tollway_webhook_rejected_total",
            "Deliveries refused with a 4xx, by code",
            ["code"],
            registry=reg,
        )
        self.failed = Counter(
            "tollway_webhook_failed_total",
            "Events that could not be applied (503)",
            ["type"],
            registry=reg,
        )
        self.apply_seconds = Histogram(
            "tollway_webhook_apply_seconds", "Time to apply one verified event", registry=reg
        )
