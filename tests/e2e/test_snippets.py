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
        "http_filters": [*load("http_filter.yaml"), ratelimit["http_filter"], router],
    }
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
