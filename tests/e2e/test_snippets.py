"""The snippets for adding tollway to an existing Envoy load into a full config and validate."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from devkit import binaries

pytestmark = pytest.mark.e2e
SNIPPETS = Path(__file__).resolve().parents[2] / "envoy" / "snippets"


@pytest.mark.parametrize("mode", ["grpc", "http"])
def test_snippets_validate_in_a_minimal_existing_config(tmp_path, mode):
    """An existing front proxy plus our filter, cluster, routes (and, in HTTP mode, the local
    reply mapper) and the ratelimit wiring passes envoy --mode validate."""
    folder = SNIPPETS / "http" if mode == "http" else SNIPPETS
    load = lambda name: yaml.safe_load((folder / name).read_text())  # noqa: E731
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        },
    }
    upstream = {
        "name": "your_upstream",
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": "your_upstream",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": "127.0.0.1", "port_value": 8080}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    ratelimit = yaml.safe_load((SNIPPETS / "ratelimit.yaml").read_text())
    routes = load("routes.yaml")
    routed = next(r for r in routes if r.get("route", {}).get("cluster") == "your_upstream")
    routed["route"]["rate_limits"] = ratelimit["route_rate_limits"]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "existing",
        "route_config": {"virtual_hosts": [{"name": "api", "domains": ["*"], "routes": routes}]},
        "http_filters": [*load("http_filter.yaml"), ratelimit["http_filter"],
                         *yaml.safe_load((SNIPPETS / "usage_header.yaml").read_text()), router],
        "access_log": yaml.safe_load((SNIPPETS / "access_log.yaml").read_text()),
        **yaml.safe_load((SNIPPETS / "connection_manager.yaml").read_text()),
    }  # fmt: skip
    if mode == "http":
        hcm["local_reply_config"] = load("local_reply.yaml")
    config = {
        "static_resources": {
            "listeners": [
                {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [*load("cluster.yaml"), ratelimit["cluster"], upstream],
        }
    }
    path = tmp_path / "existing.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [binaries.envoy(), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_the_http_snippets_are_what_envoy_http_yaml_runs():
    """The HTTP-mode filter and local reply mapper are the ones the e2e tests run."""
    shipped = yaml.safe_load((SNIPPETS.parent / "envoy-http.yaml").read_text())
    hcm = shipped["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    hcm = hcm["typed_config"]
    snippet = SNIPPETS / "http"
    assert yaml.safe_load((snippet / "http_filter.yaml").read_text()) == [hcm["http_filters"][0]]
    assert yaml.safe_load((snippet / "local_reply.yaml").read_text()) == hcm["local_reply_config"]


@pytest.mark.parametrize("shipped", ["envoy.yaml", "envoy-http.yaml"])
def test_the_billing_snippets_are_what_the_shipped_configs_run(shipped):
    """The access log, the usage header filter and the receivers' cluster (but its address)."""
    config = yaml.safe_load((SNIPPETS.parent / shipped).read_text())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    hcm = hcm["typed_config"]
    (als,) = yaml.safe_load((SNIPPETS / "access_log.yaml").read_text())
    assert als in hcm["access_log"]
    (h2m,) = yaml.safe_load((SNIPPETS / "usage_header.yaml").read_text())
    assert h2m in hcm["http_filters"]
    folder = SNIPPETS / "http" if shipped == "envoy-http.yaml" else SNIPPETS
    snippet = next(c for c in yaml.safe_load((folder / "cluster.yaml").read_text())
                   if c["name"] == "tollway_usage_log")  # fmt: skip
    ours = next(
        c for c in config["static_resources"]["clusters"] if c["name"] == "tollway_usage_log"
    )
    strip = lambda c: {k: v for k, v in c.items() if k not in ("type", "load_assignment")}  # noqa: E731
    assert strip(snippet) == strip(ours)
