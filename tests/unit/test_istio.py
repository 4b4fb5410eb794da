"""The Istio overlay (deploy/kubernetes/overlays/istio and istio-http) as kustomize renders it:
the fields that must agree do: provider name and service, ports, probes, environment variables
and secrets."""

from __future__ import annotations

from typing import Any

import yaml

from authz.settings import AuthzSettings
from metering.settings import ReceiverSettings
from portal.settings import PortalSettings
from tests.kube import KUBE, ROOT, render
from tollway.settings import load
from webhook.settings import WebhookSettings

ENVOY_YAML = ROOT / "envoy" / "envoy.yaml"


def mesh(folder: str = "istio") -> dict[str, Any]:
    """The IstioOperator of mesh-config.yaml (for istioctl, so not in the kustomization)."""
    doc: dict[str, Any] = yaml.safe_load(
        (KUBE / "overlays" / folder / "mesh-config.yaml").read_text()
    )
    assert doc["kind"] == "IstioOperator"
    return doc


def find(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return render("istio").find(kind, name)


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return render("istio").env_of(container)


def test_the_provider_the_policy_names_is_the_authz_service():
    (provider, _) = mesh()["spec"]["meshConfig"]["extensionProviders"]
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


def test_the_http_mode_provider_and_patch_agree_with_envoy_http_yaml():
    """HTTP mode: the envoyExtAuthzHttp provider names the authz Service and port, sends the
    headers envoy-http.yaml sends, and the patch turns the authz Deployment to HTTP mode."""
    (provider, als) = mesh("istio-http")["spec"]["meshConfig"]["extensionProviders"]
    assert als == mesh()["spec"]["meshConfig"]["extensionProviders"][1]
    p = provider["envoyExtAuthzHttp"]
    (service,) = find("Service", "tollway-authz")
    meta = service["metadata"]
    assert p["service"] == f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
    assert p["port"] == AuthzSettings().port and p["failOpen"] is False
    shipped = yaml.safe_load((ENVOY_YAML.with_name("envoy-http.yaml")).read_text())
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
    http = render("istio-http")
    container = http.container("tollway-authz")
    assert load(AuthzSettings, http.env_of(container)).mode == "http"
    assert container["readinessProbe"] == {"httpGet": {"path": "/healthz", "port": p["port"]},
                                           "periodSeconds": 2, "failureThreshold": 1}  # fmt: skip
    assert container["livenessProbe"]["tcpSocket"] == {"port": p["port"]}


def test_the_access_log_reaches_the_receivers_from_the_api_only():
    """The envoyHttpAls provider names the receiver Service and port; the Telemetry resource
    turns it on for the workloads the CUSTOM policy checks; the receivers take mTLS only,
    from the API's service account."""
    (_, provider) = mesh()["spec"]["meshConfig"]["extensionProviders"]
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
