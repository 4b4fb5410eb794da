"""A real Prometheus (Debian's) scrapes the whole stack: every query of the Grafana dashboard
runs, and those whose metrics the traffic here produces return data; then the access-log
receiver stops, and the access-log alert of dashboards/alerts.yaml fires.

The rules are loaded as shipped but for their `for:` durations, set to 0 here: the test
shows that the expressions fire on what the services export, not that Prometheus waits five
minutes (tests/unit/test_alerts.py holds the durations with promtool)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import stripe
import yaml

from devkit.seed import seed_prices
from devkit.stack import free_port, http_ok, wait_for
from tests.e2e.conftest import fetch, running_edge
from tests.support import TEST_TIERS
from tollway import schema
from tollway.tiers import parse_tiers

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
# What the stack runs here that the dashboard reads: metering drains often, and reports the
# access log silent 5 s (its floor) after the receiver stops.
ENV = {"TOLLWAY_METERING_INTERVAL": "0.3", "TOLLWAY_METERING_LOG_GRACE_S": "1",
       "TOLLWAY_USAGE_WINDOW_S": "1", "TOLLWAY_METERING_CLOSE_SLACK_S": "0"}  # fmt: skip
# Dashboard queries on labelled metrics whose labels only failures create (a dry-run tier's
# denial, an ignored reported amount, an event that could not be applied): they must run,
# and may return nothing here.
ONLY_ON_FAILURE = ("tollway_authz_dry_run_denials_total", "tollway_accesslog_bad_amounts_total",
                   "tollway_webhook_failed_total")  # fmt: skip


def prometheus_api(port: int, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params)
    status, body = fetch(f"http://127.0.0.1:{port}/api/v1/{path}?{query}")
    assert status == 200, body[:500]
    reply = json.loads(body)
    assert reply["status"] == "success", reply
    return reply["data"]


def start_prometheus(tmp: Path, targets: dict[str, int]) -> tuple[subprocess.Popen[bytes], int]:
    rules = yaml.safe_load((ROOT / "dashboards" / "alerts.yaml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "0s"
    (tmp / "rules.yaml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / "rules.yaml")],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in targets.items()
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = ["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/-/ready"), "prometheus", 30)
    return proc, port


def dashboard_queries() -> list[str]:
    dashboard = json.loads((ROOT / "dashboards" / "tollway.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    # Grafana's variables, at "All".
    return [e.replace("$job", ".*").replace("$instance", ".*") for e in exprs]


@pytest.mark.timeout(180)
def test_prometheus_scrapes_the_stack_and_the_access_log_alert_fires(tmp_path):
    with running_edge(tmp_path, TEST_TIERS, env=ENV, portal=True) as edge:
        ports = edge.stack.ports
        tiers = edge.stack.tiers
        asyncio.run(seed_prices(edge.stack.standin_url, parse_tiers(tiers.read_text(), "t")))
        key, _ = edge.issue("pro")
        targets = {"authz": ports.authz_metrics, "webhook": ports.webhook,
                   "metering": ports.metering, "receiver": ports.receiver_metrics,
                   "portal": ports.portal_metrics}  # fmt: skip
        proc, port = start_prometheus(tmp_path, targets)
        try:
            # Traffic for the panels: checks allowed and denied, an unsigned webhook.
            for _ in range(20):
                assert edge.get("/v1/things", key).status == 200
            assert edge.get("/v1/things", "tw_live_nosuchkey").status == 401
            hook = f"http://127.0.0.1:{ports.webhook}/webhooks/stripe"
            fetch(hook, b"{}")  # unsigned: refused, counted by code
            event = json.dumps({"id": "evt_prometheus", "object": "event", "type": "customer.created",
                                "created": int(time.time()), "data": {"object": {"id": "cus_p"}}})  # fmt: skip
            header = stripe.WebhookSignature.generate_signature_header(
                event, edge.stack.webhook_secret
            )
            assert fetch(hook, event.encode(), {"Stripe-Signature": header})[0] == 200
            tiers.write_text(tiers.read_text() + "\n")  # every service reloads the table
            heard = lambda: edge.redis.get(schema.ACCESS_LOG_HEARD) is not None  # noqa: E731
            wait_for(heard, "the receiver hears Envoy", 15)

            def up() -> bool:
                found = prometheus_api(port, "query", query="up")["result"]
                return len(found) == len(targets) and all(x["value"][1] == "1" for x in found)

            wait_for(up, "prometheus scrapes every service", 30)

            def answered(expr: str) -> bool:
                return bool(prometheus_api(port, "query", query=expr)["result"])

            queries = dashboard_queries()
            assert len(queries) >= 20
            deadline = time.monotonic() + 60  # rates need two scrapes in their window
            pending = [q for q in queries if not any(m in q for m in ONLY_ON_FAILURE)]
            while pending:
                pending = [q for q in pending if not answered(q)]
                assert time.monotonic() < deadline, f"no data for: {pending}"
                time.sleep(1)
            for q in queries:  # the rest run (a bad query would not answer success)
                prometheus_api(port, "query", query=q)
            build = prometheus_api(port, "query", query="count by (job) (tollway_build_info)")
            assert {s["metric"]["job"] for s in build["result"]} == set(targets)

            def firing(name: str) -> bool:
                alerts = prometheus_api(port, "alerts")["alerts"]
                return any(a["labels"]["alertname"] == name and a["state"] == "firing" for a in alerts)  # fmt: skip

            assert not firing("TollwayAccessLogSilent")
            edge.stack.stop("receiver")
            wait_for(lambda: firing("TollwayAccessLogSilent"), "the access-log alert fires", 60)
            alerts = prometheus_api(port, "alerts")["alerts"]
            assert {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"} == {
                "TollwayAccessLogSilent"}  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(10)
