"""Load envoy/envoy.yaml and move its ports, so tests and `tollway dev` run the shipped file."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ENVOY_YAML = Path(__file__).resolve().parents[1] / "envoy" / "envoy.yaml"
ENVOY_HTTP_YAML = ENVOY_YAML.with_name("envoy-http.yaml")  # ext_authz http_service


def source_for(authz_mode: str) -> Path:
    """The shipped front-proxy config for authz's mode: "grpc" or "http"."""
    return ENVOY_HTTP_YAML if authz_mode == "http" else ENVOY_YAML


def _set_cluster_ports(config: dict[str, Any], cluster: str, ports: list[int]) -> None:
    """Point ``cluster`` at 127.0.0.1 on ``ports``, one endpoint each, keeping everything else."""
    for c in config["static_resources"]["clusters"]:
        if c["name"] == cluster:
            group = c["load_assignment"]["endpoints"][0]
            template = group["lb_endpoints"][0]
            group["lb_endpoints"] = []
            for port in ports:
                ep = copy.deepcopy(template)
                ep["endpoint"]["address"]["socket_address"]["port_value"] = port
                group["lb_endpoints"].append(ep)
            return
    raise KeyError(f"cluster {cluster!r} not in envoy config")


def render(
    listener_port: int,
    admin_port: int,
    authz_port: int | list[int],
    upstream_port: int,
    source: Path = ENVOY_YAML,
    usage_log_port: int | list[int] = 9193,
) -> dict[str, Any]:
    """The config at ``source`` with its ports replaced; nothing else changes. ``authz_port``
    may list one port per authz worker (see --worker-port-base); ``usage_log_port`` those of the
    access-log receivers."""
    config: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8"))
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = listener_port
    _set_cluster_ports(
        config, "tollway_authz", authz_port if isinstance(authz_port, list) else [authz_port]
    )
    _set_cluster_ports(config, "upstream", [upstream_port])
    receivers = usage_log_port if isinstance(usage_log_port, list) else [usage_log_port]
    _set_cluster_ports(config, "tollway_usage_log", receivers)
    return config


# docker-compose.yml: authz runs 2 workers, each also on its own port (--worker-port-base).
COMPOSE_AUTHZ_PORTS = [9300, 9301]
COMPOSE_HEADER = (
    "# Generated from envoy/envoy.yaml by `python -m devkit.envoy_config --compose`;\n"
    "# do not edit (a test checks that it is current). For docker-compose.yml: the clusters\n"
    "# point at the authz and upstream services by name, and the listener binds every address.\n"
)
COMPOSE_HOSTS = {"tollway_authz": "authz", "upstream": "upstream", "tollway_usage_log": "receiver"}
# Kubernetes (deploy/kubernetes/components/envoy): headless Services, so that Envoy resolves
# every authz and receiver pod and balances its own connections over them.
KUBERNETES_HOSTS = {
    "tollway_authz": "tollway-authz-pods.tollway.svc.cluster.local",
    "upstream": "upstream.tollway.svc.cluster.local",
    "tollway_usage_log": "tollway-receiver-pods.tollway.svc.cluster.local",
}
KUBERNETES_DIR = ENVOY_YAML.parents[1] / "deploy" / "kubernetes" / "components" / "envoy"
KUBERNETES_FILES = {"grpc.yaml": ENVOY_YAML, "http.yaml": ENVOY_HTTP_YAML}


def for_hosts(
    source: Path, hosts: dict[str, str], authz_ports: list[int], upstream_port: int = 8080
) -> dict[str, Any]:
    """The shipped config with its clusters resolving ``hosts`` (cluster name -> DNS name) and
    its listener on every address, port 10000."""
    config = render(10000, 9901, authz_ports, upstream_port, source)
    config["static_resources"]["listeners"][0]["address"]["socket_address"]["address"] = "0.0.0.0"
    for c in config["static_resources"]["clusters"]:
        c["type"] = "STRICT_DNS"
        for ep in c["load_assignment"]["endpoints"][0]["lb_endpoints"]:
            ep["endpoint"]["address"]["socket_address"]["address"] = hosts[c["name"]]
    return config


def compose_text(source: Path = ENVOY_YAML) -> str:
    """envoy/envoy-compose.yaml: docker-compose's service names."""
    config = for_hosts(source, COMPOSE_HOSTS, COMPOSE_AUTHZ_PORTS)
    return COMPOSE_HEADER + yaml.safe_dump(config, sort_keys=False)


def kubernetes_text(source: Path) -> str:
    """One of KUBERNETES_FILES: the Services of deploy/kubernetes, authz on its one port."""
    header = (
        f"# Generated from envoy/{source.name} by `python -m devkit.envoy_config --kubernetes`;\n"
        "# do not edit (a test checks that it is current). The clusters resolve tollway's\n"
        "# Services in the tollway namespace; `upstream` is your API (overlays/production).\n"
    )
    config = for_hosts(source, KUBERNETES_HOSTS, [9191])
    return header + yaml.safe_dump(config, sort_keys=False)


TLS_SNIPPET = ENVOY_YAML.parent / "snippets" / "tls.yaml"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@dataclass(frozen=True)
class UpstreamTls:
    """Envoy's side of TLS to authz and the receivers: the CA their certificates chain to,
    Envoy's own certificate and key (for mutual TLS), and the name theirs carry."""

    ca: Path
    cert: Path
    key: Path
    name: str


def with_upstream_tls(config: dict[str, Any], tls: UpstreamTls) -> dict[str, Any]:
    """``config`` with envoy/snippets/tls.yaml's transport_socket on the tollway_authz and
    tollway_usage_log clusters, on ``tls``'s files and name (no ALPN for an HTTP/1.1 one)."""
    block = yaml.safe_load(TLS_SNIPPET.read_text(encoding="utf-8"))["transport_socket"]
    for c in config["static_resources"]["clusters"]:
        if c["name"] not in ("tollway_authz", "tollway_usage_log"):
            continue
        socket = copy.deepcopy(block)
        ctx = socket["typed_config"]
        ctx["sni"] = tls.name
        common = ctx["common_tls_context"]
        options = c["typed_extension_protocol_options"][HTTP_OPTIONS]["explicit_http_config"]
        if "http2_protocol_options" not in options:  # authz in HTTP mode: HTTP/1.1
            del common["alpn_protocols"]
        (pair,) = common["tls_certificates"]
        pair["certificate_chain"]["filename"] = str(tls.cert)
        pair["private_key"]["filename"] = str(tls.key)
        validation = common["validation_context"]
        validation["trusted_ca"]["filename"] = str(tls.ca)
        (san,) = validation["match_typed_subject_alt_names"]
        san["matcher"]["exact"] = tls.name
        c["transport_socket"] = socket
    return config


def write(config: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--compose"]:
        out = ENVOY_YAML.with_name("envoy-compose.yaml")
        out.write_text(compose_text(), encoding="utf-8")
        print(f"wrote {out}")
    elif sys.argv[1:] == ["--kubernetes"]:
        for name, source in KUBERNETES_FILES.items():
            out = KUBERNETES_DIR / name
            out.write_text(kubernetes_text(source), encoding="utf-8")
            print(f"wrote {out}")
    else:
        sys.exit("usage: python -m devkit.envoy_config --compose | --kubernetes")
