"""The Istio and Kubernetes manifests in envoy/istio/: they parse, and the fields that must
agree do: provider name and service, ports, probes, environment variables and secrets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from api.settings import ApiSettings
from authz import AUTH_SERVICE
from authz.settings import AuthzSettings
from metering.settings import MeteringSettings, ReceiverSettings
from portal.settings import PortalSettings
from tollway.settings import describe, load
from webhook.settings import WebhookSettings

ISTIO = Path(__file__).resolve().parents[2] / "envoy" / "istio"
ENVOY_YAML = ISTIO.parent / "envoy.yaml"
SETTINGS = {"authz": AuthzSettings, "webhook": WebhookSettings, "metering": MeteringSettings,
            "receiver": ReceiverSettings, "portal": PortalSettings, "api": ApiSettings}  # fmt: skip
ARGS = {"receiver": ["metering", "receive"], "api": ["api", "serve"]}  # the others: their own name


def docs() -> list[dict[str, Any]]:
    out = []
    for path in sorted(ISTIO.glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def find(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        d for d in docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment, with each secret reference checked against the Secret
    manifest and given a fresh value: the manifest's placeholders are refused by every service
    (tests/unit/test_settings.py), as they must be until an operator replaces them."""
    (secret,) = find("Secret", "tollway-secrets")
    out = {}
    for e in container["env"]:
        if "value" in e:
            out[e["name"]] = str(e["value"])
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "tollway-secrets" and ref["key"] in secret["stringData"], e
            out[e["name"]] = f"fresh-{os.urandom(16).hex()}"
    return out


def test_the_provider_the_policy_names_is_the_authz_service():
    (mesh,) = find("IstioOperator")
    (provider, _) = mesh["spec"]["meshConfig"]["extensionProviders"]
    (policy,) = [p for p in find("AuthorizationPolicy") if p["spec"]["action"] == "CUSTOM"]
    assert policy["spec"]["action"] == "CUSTOM"
    assert policy["spec"]["provider"]["name"] == provider["name"]
    grpc = provider["envoyExtAuthzGrpc"]
    (service,) = find("Service", "tollway-authz")
    meta = service["metadata"]
    assert grpc["service"] == f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
    assert grpc["failOpen"] is False and grpc["statusOnError"] == "503"
    # The same timeout as the shipped envoy.yaml's ext_authz filter.
    assert grpc["timeout"] == "0.25s" and "timeout: 0.25s" in ENVOY_YAML.read_text()
    (port,) = [p for p in service["spec"]["ports"] if p["name"].startswith("grpc")]
    assert grpc["port"] == port["port"] == AuthzSettings().port


def test_each_deployment_agrees_with_its_service_settings_and_budget():
    for name, cls in SETTINGS.items():
        (deploy,) = find("Deployment", f"tollway-{name}")
        (service,) = find("Service", f"tollway-{name}")
        (pdb,) = find("PodDisruptionBudget", f"tollway-{name}")
        spec = deploy["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["replicas"] == 2
        assert spec["selector"]["matchLabels"] == labels == service["spec"]["selector"]
        assert pdb["spec"]["selector"]["matchLabels"] == labels and pdb["spec"]["minAvailable"] == 1
        (container,) = spec["template"]["spec"]["containers"]
        assert container["args"] == ARGS.get(name, [name])
        assert container["resources"]["requests"] and container["resources"]["limits"]
        env = env_of(container)
        known = {row[0] for row in describe(cls)}
        assert set(env) <= known, sorted(set(env) - known)
        settings = load(cls, env)  # every value is one the service accepts
        assert settings.host == "0.0.0.0"
        served = {p["containerPort"] for p in container["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= served
        assert settings.port in served
        probe = container["readinessProbe"]
        if name == "receiver":
            assert probe["httpGet"] == {"path": "/healthz", "port": settings.metrics_port}
        elif name == "authz":
            assert probe["grpc"] == {"port": settings.port, "service": AUTH_SERVICE}
            assert container["livenessProbe"]["grpc"]["port"] == settings.port
            assert settings.metrics_port in served
        else:
            assert probe["httpGet"] == {"path": "/healthz", "port": settings.port}


def test_the_http_mode_provider_and_patch_agree_with_envoy_http_yaml():
    """HTTP mode: the envoyExtAuthzHttp provider names the authz Service and port, sends the
    headers envoy-http.yaml sends, and the patch turns the authz Deployment to HTTP mode."""
    http = ISTIO / "http"
    mesh = yaml.safe_load((http / "mesh-config.yaml").read_text())
    (provider, als) = mesh["spec"]["meshConfig"]["extensionProviders"]
    assert als == find("IstioOperator")[0]["spec"]["meshConfig"]["extensionProviders"][1]
    p = provider["envoyExtAuthzHttp"]
    (service,) = find("Service", "tollway-authz")
    meta = service["metadata"]
    assert p["service"] == f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
    assert p["port"] == AuthzSettings().port and p["failOpen"] is False
    shipped = yaml.safe_load((ISTIO.parent / "envoy-http.yaml").read_text())
    hcm = shipped["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    service_cfg = hcm["typed_config"]["http_filters"][0]["typed_config"]["http_service"]
    assert p["pathPrefix"] == service_cfg["path_prefix"]

    def names(matchers: dict[str, Any]) -> set[str]:
        return {m.get("exact") or m["prefix"] for m in matchers["patterns"]}

    resp = service_cfg["authorization_response"]
    assert set(p["headersToUpstreamOnAllow"]) == names(resp["allowed_upstream_headers"])
    on_allow = {h if not h.startswith("ratelimit-") else "ratelimit-" for h in p["headersToDownstreamOnAllow"]}  # fmt: skip
    assert on_allow == names(resp["allowed_client_headers_on_success"])
    on_deny = {h if not h.startswith("ratelimit-") else "ratelimit-" for h in p["headersToDownstreamOnDeny"]}  # fmt: skip
    assert on_deny == names(resp["allowed_client_headers"])
    patch = yaml.safe_load((http / "authz-patch.yaml").read_text())
    (deploy,) = find("Deployment", "tollway-authz")
    assert patch["metadata"] == {k: deploy["metadata"][k] for k in ("name", "namespace")}
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert load(AuthzSettings, env).mode == "http"
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": p["port"]}


def test_the_access_log_reaches_the_receivers_from_the_api_only():
    """The envoyHttpAls provider names the receiver Service and port; the Telemetry resource
    turns it on for the workloads the CUSTOM policy checks; the receivers take mTLS only,
    from the API's service account."""
    (mesh,) = find("IstioOperator")
    (_, provider) = mesh["spec"]["meshConfig"]["extensionProviders"]
    als = provider["envoyHttpAls"]
    (service,) = find("Service", "tollway-receiver")
    meta = service["metadata"]
    assert als["service"] == f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
    (port,) = [p for p in service["spec"]["ports"] if p["name"].startswith("grpc")]
    assert als["port"] == port["port"] == ReceiverSettings.__dataclass_fields__["port"].default
    (telemetry,) = find("Telemetry")
    (policy,) = [p for p in find("AuthorizationPolicy") if p["spec"]["action"] == "CUSTOM"]
    assert telemetry["spec"]["selector"] == policy["spec"]["selector"]
    assert telemetry["metadata"]["namespace"] == policy["metadata"]["namespace"]
    assert telemetry["spec"]["accessLogging"] == [{"providers": [{"name": provider["name"]}]}]
    (peer,) = find("PeerAuthentication", "tollway-receiver")
    assert peer["spec"]["mtls"]["mode"] == "STRICT"
    (allow,) = find("AuthorizationPolicy", "tollway-receiver")
    assert allow["spec"]["action"] == "ALLOW"
    assert allow["spec"]["selector"] == peer["spec"]["selector"] == {
        "matchLabels": service["spec"]["selector"]}  # fmt: skip
    (h2m,) = [d for d in find("EnvoyFilter") if d["metadata"]["name"] == "tollway-usage-header"]
    shipped = yaml.safe_load(ENVOY_YAML.read_text())
    hcm = shipped["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    assert h2m["spec"]["configPatches"][0]["patch"]["value"] in hcm["typed_config"]["http_filters"]


def test_checkout_ends_on_the_portal_and_the_portal_reaches_the_webhook_service():
    (webhook,) = find("Deployment", "tollway-webhook")
    (portal,) = find("Deployment", "tollway-portal")
    hook = load(WebhookSettings, env_of(webhook["spec"]["template"]["spec"]["containers"][0]))
    settings = load(PortalSettings, env_of(portal["spec"]["template"]["spec"]["containers"][0]))
    assert hook.success_url.startswith(f"{settings.public_url}/welcome?session_id=")
    assert settings.secure_cookies  # served over https
    (service,) = find("Service", "tollway-webhook")
    meta = service["metadata"]
    assert settings.webhook_url == (
        f"http://{meta['name']}.{meta['namespace']}.svc.cluster.local:{hook.port}")  # fmt: skip
