"""The bench's Envoy config: listeners that answer directly (no upstream is measured), one with
ext_authz, one without, and one with ext_authz to each other server measured beside authz
(the empty-handler ceiling; in HTTP mode, the lean reference, bench/reference.py). The filter
and the authz cluster come from the shipped envoy/envoy.yaml (gRPC mode) or
envoy/envoy-http.yaml (HTTP mode); the other listeners differ from authz's only in the
cluster's endpoint."""

from __future__ import annotations

import copy
from typing import Any

from devkit.envoy_config import render, source_for


def envoy_config(
    auth_port: int,
    base_port: int,
    admin: int,
    authz: int | list[int],
    others: dict[str, tuple[int, int]] | None = None,
    mode: str = "grpc",
) -> dict[str, Any]:
    """``authz`` is one port per worker; ``others``: listener name -> (its port, the port of
    the server its ext_authz calls)."""
    shipped = render(0, 0, authz, 0, source_for(mode))
    hcm_filter = shipped["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    ext_authz = hcm_filter["typed_config"]["http_filters"][0]
    router = hcm_filter["typed_config"]["http_filters"][-1]
    cluster = next(
        c for c in shipped["static_resources"]["clusters"] if c["name"] == "tollway_authz"
    )

    def listener(name: str, port: int, filters: list[Any]) -> dict[str, Any]:
        return {
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [
                {
                    "filters": [
                        {
                            "name": hcm_filter["name"],
                            "typed_config": {
                                "@type": hcm_filter["typed_config"]["@type"],
                                "stat_prefix": name,
                                "route_config": {
                                    "virtual_hosts": [
                                        {
                                            "name": name,
                                            "domains": ["*"],
                                            "routes": [
                                                {
                                                    "match": {"prefix": "/"},
                                                    "direct_response": {
                                                        "status": 200,
                                                        "body": {"inline_string": "ok"},
                                                    },
                                                }
                                            ],
                                        }
                                    ]
                                },
                                "http_filters": [*filters, router],
                            },
                        }
                    ]
                }
            ],
        }

    listeners = [
        listener("with_authz", auth_port, [ext_authz]),
        listener("baseline", base_port, []),
    ]
    clusters = [cluster]
    for name, (listener_port, target) in (others or {}).items():
        filter_to = copy.deepcopy(ext_authz)
        service = filter_to["typed_config"]
        if mode == "http":
            service["http_service"]["server_uri"]["cluster"] = f"bench_{name}"
        else:
            service["grpc_service"]["envoy_grpc"]["cluster_name"] = f"bench_{name}"
        other = copy.deepcopy(cluster)
        other["name"] = other["load_assignment"]["cluster_name"] = f"bench_{name}"
        address = {"socket_address": {"address": "127.0.0.1", "port_value": target}}
        other["load_assignment"]["endpoints"] = [
            {"lb_endpoints": [{"endpoint": {"address": address}}]}
        ]
        listeners.append(listener(name, listener_port, [filter_to]))
        clusters.append(other)
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }
