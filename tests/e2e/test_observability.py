"""Metrics: docs/metrics.md lists exactly what the running services serve, and every metric the
Grafana dashboard (dashboards/tollway.json) queries is served."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import fetch

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def scrape(edge) -> str:
    """The /metrics of authz, webhook, metering and the access-log receiver in the running
    stack, after some traffic."""
    key, _ = edge.issue("pro")
    edge.get("/v1/things", key)
    ports = edge.stack.ports
    texts = [edge.authz_metrics()]
    for port in (ports.webhook, ports.metering, ports.receiver_metrics):
        status, body = fetch(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        texts.append(body.decode())
    return "\n".join(texts)


def documented_metrics(section: str | None = None) -> set[str]:
    """The metrics docs/metrics.md lists: all, or those of one ``## section``'s table."""
    text = (ROOT / "docs/metrics.md").read_text()
    if section is not None:
        text = text[text.index(f"## {section}") :].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(tollway_[a-z_]+)` \|", text, re.M))


def families(text: str) -> dict[str, str]:
    """{metric family as documented (counters with _total): type} from the TYPE lines."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE tollway_"):
            _, _, name, kind = line.split()
            if name.endswith("_created"):
                continue  # prometheus_client's creation timestamps of unlabelled metrics
            if kind == "counter" and not name.endswith("_total"):
                name += "_total"
            out[name] = kind
    return out


def series(fams: dict[str, str]) -> set[str]:
    """Every series name a query may use: histograms add _bucket, _sum and _count."""
    names = set(fams)
    for name, kind in fams.items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def test_docs_list_exactly_the_metrics_the_services_serve(edge):
    served = families(scrape(edge))
    documented = documented_metrics() - documented_metrics("portal")  # tests/e2e/test_portal.py
    assert len(served) >= 19
    assert documented == set(served), sorted(documented ^ set(served))


def test_every_dashboard_query_uses_served_metrics(edge):
    served = series(families(scrape(edge)))
    dashboard = json.loads((ROOT / "dashboards/tollway.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"tollway_[a-z_]+", target["expr"])}  # fmt: skip
    assert len(used) >= 15
    assert used <= served, sorted(used - served)
