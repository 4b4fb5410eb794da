"""dashboards/alerts.yaml: Prometheus accepts the rules (`promtool check rules`), each alert
fires on the series that should raise it and not on quiet ones (`promtool test rules` with
dashboards/alerts_test.yaml), and every metric they read is one docs/metrics.md lists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "dashboards" / "alerts.yaml"
TESTS = ROOT / "dashboards" / "alerts_test.yaml"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: run `make test` or `make unit` (scripts/ensure-prometheus.sh installs it)"
        )
    return path


def test_prometheus_accepts_the_rules():
    proc = subprocess.run([promtool(), "check", "rules", str(RULES)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_each_alert_fires_when_it_should_and_not_before():
    proc = subprocess.run([promtool(), "test", "rules", str(TESTS)], cwd=TESTS.parent,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_is_tested_firing_and_reads_documented_metrics():
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    fired = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t["exp_alerts"]}
    quiet = {t["alertname"] for case in tests for t in case["alert_rule_test"] if not t["exp_alerts"]}  # fmt: skip
    names = {r["alert"] for r in rules}
    assert fired == names and quiet == names
    documented = set(re.findall(r"^\| `(tollway_[a-z_]+)` \|", (ROOT / "docs/metrics.md").read_text(), re.M))  # fmt: skip
    for rule in rules:
        read = set(re.findall(r"tollway_[a-z_]+", rule["expr"])) - {"tollway_"}
        if "__name__" in rule["expr"]:  # a regex over names: each name it can match
            (pattern,) = re.findall(r'__name__=~"([^"]+)"', rule["expr"])
            read = {m for m in documented if re.fullmatch(pattern, m)}
            assert read, rule["alert"]
        assert read and read <= documented, (rule["alert"], read - documented)
