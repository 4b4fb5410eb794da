"""deploy/kubernetes: every overlay renders (`kubectl kustomize`), every object is valid against
the Kubernetes schemas (offline, kubernetes-validate), and what must agree does: each service's
image, command, ports, probes and environment with its settings module; the Secret's keys;
Envoy's clusters with the Services; who may reach what; what faces the internet."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from api.settings import ApiSettings
from authz import AUTH_SERVICE
from authz.settings import AuthzSettings
from devkit.envoy_config import KUBERNETES_FILES, kubernetes_text
from metering.settings import MeteringSettings, ReceiverSettings
from portal.settings import PortalSettings
from tests.kube import KUBE, OVERLAYS, ROOT, Rendered, render, secret_keys
from tollway.settings import describe, load
from webhook.settings import WebhookSettings

SETTINGS = {"authz": AuthzSettings, "webhook": WebhookSettings, "metering": MeteringSettings,
            "receiver": ReceiverSettings, "portal": PortalSettings, "api": ApiSettings}  # fmt: skip
ARGS = {"receiver": ["metering", "receive"], "api": ["api", "serve"]}  # the others: their own name
# The Kubernetes release whose schemas every object must satisfy: the oldest one still
# supported upstream when this was written, so that the manifests apply to every newer one.
KUBERNETES = "1.32.0"
# What only a mesh defines: Istio's resources, which have no Kubernetes schema.
ISTIO_GROUPS = ("security.istio.io/", "telemetry.istio.io/", "networking.istio.io/")
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
WITH_ENVOY = ("dev", "production")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_against_the_kubernetes_schemas(overlay):
    rendered = render(overlay)
    checked = 0
    for doc in rendered.docs:
        if doc["apiVersion"].startswith(ISTIO_GROUPS):
            assert overlay.startswith("istio"), doc["metadata"]
            continue
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        checked += 1
    assert checked >= 20  # six services' Service, Deployment and budget, at least


def test_an_invalid_object_is_refused():
    """The validation above can fail: a misspelt field is refused."""
    deploy = render("production").one("Deployment", "tollway-webhook")
    broken = {**deploy, "spec": {**deploy["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_agrees_with_its_settings_module(overlay):
    rendered = render(overlay)
    for name, cls in SETTINGS.items():
        deploy = rendered.one("Deployment", f"tollway-{name}")
        service = rendered.one("Service", f"tollway-{name}")
        pdb = rendered.one("PodDisruptionBudget", f"tollway-{name}")
        spec = deploy["spec"]
        labels = spec["template"]["metadata"]["labels"]
        if overlay == "dev":
            assert spec["replicas"] == 1 and pdb["spec"]["minAvailable"] == 0
        elif overlay == "production" and name == "authz":
            assert "replicas" not in spec  # the HorizontalPodAutoscaler's
        else:
            assert spec["replicas"] == 2 and pdb["spec"]["minAvailable"] == 1
        assert spec["selector"]["matchLabels"] == labels == service["spec"]["selector"]
        assert pdb["spec"]["selector"]["matchLabels"] == labels
        container = rendered.container(f"tollway-{name}")
        assert container["args"] == ARGS.get(name, [name])
        assert container["image"] == image(overlay)
        assert container["resources"]["requests"] and container["resources"]["limits"]
        env = rendered.env_of(container)
        known = {row[0] for row in describe(cls)}
        assert set(env) <= known, sorted(set(env) - known)
        settings = load(cls, env)  # every value is one the service accepts
        assert settings.host == "0.0.0.0"
        served = {p["containerPort"] for p in container["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= served
        assert settings.port in served
        metrics_port = getattr(settings, "metrics_port", 0)
        assert not metrics_port or metrics_port in served  # Prometheus can reach it
        mount = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
        tiers = volumes[mount[str(settings.tiers.parent)]]["configMap"]["name"]
        assert rendered.one("ConfigMap", tiers)["data"][settings.tiers.name]
        probe = container["readinessProbe"]
        if name == "receiver":
            assert probe["httpGet"] == {"path": "/healthz", "port": settings.metrics_port}
        elif name == "authz" and settings.mode == "http":
            assert probe["httpGet"] == {"path": "/healthz", "port": settings.port}
        elif name == "authz":
            assert probe["grpc"] == {"port": settings.port, "service": AUTH_SERVICE}
            assert container["livenessProbe"]["grpc"]["port"] == settings.port
            assert settings.metrics_port in served
        else:
            assert probe["httpGet"] == {"path": "/healthz", "port": settings.port}


def image(overlay: str) -> str:
    if overlay == "production":
        (entry,) = yaml.safe_load((KUBE / "overlays/production/kustomization.yaml").read_text())[
            "images"
        ]
        return f"{entry['newName']}:{entry['newTag']}"
    return "tollway:latest"


def test_the_tier_table_is_the_shipped_one():
    assert (KUBE / "base" / "tiers.toml").read_text() == (
        ROOT / "tollway" / "data" / "tiers.toml"
    ).read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_secret_is_referenced_and_written_only_by_the_dev_overlay(overlay):
    rendered = render(overlay)
    used = set()
    for deploy in rendered.find("Deployment"):
        for container in deploy["spec"]["template"]["spec"]["containers"]:
            for e in container.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    used.add(ref["key"])
    assert used == set(secret_keys())
    secrets = rendered.find("Secret")
    if overlay == "dev":
        (secret,) = secrets
        assert sorted(secret["data"]) == sorted(secret_keys())
    else:
        assert secrets == []


def envoy_config(rendered: Rendered) -> tuple[str, dict[str, Any]]:
    """The file the Envoy Deployment starts with, and that file as its ConfigMap holds it."""
    container = rendered.container("tollway-envoy")
    flag = container["args"].index("-c")
    path = container["args"][flag + 1]
    (mount,) = container["volumeMounts"]
    assert path.startswith(mount["mountPath"] + "/")
    (volume,) = rendered.one("Deployment", "tollway-envoy")["spec"]["template"]["spec"]["volumes"]
    config = rendered.one("ConfigMap", volume["configMap"]["name"])["data"]
    name = path.rsplit("/", 1)[1]
    return name, yaml.safe_load(config[name])


@pytest.mark.parametrize("overlay,components", [(o, ()) for o in WITH_ENVOY]
                         + [("production", ("http-mode",))])  # fmt: skip
def test_envoy_runs_the_shipped_config_of_authz_mode_against_the_services(overlay, components):
    rendered = render(overlay, components)
    container = rendered.container("tollway-envoy")
    assert container["image"] == COMPOSE["services"]["envoy"]["image"]
    name, config = envoy_config(rendered)
    mode = load(AuthzSettings, rendered.env_of(rendered.container("tollway-authz"))).mode
    assert name == f"{mode}.yaml"
    assert yaml.safe_dump(config, sort_keys=False) in kubernetes_text(KUBERNETES_FILES[name])
    listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert {p["containerPort"] for p in container["ports"]} == {listener["port_value"]}
    for cluster in config["static_resources"]["clusters"]:
        assert cluster["type"] == "STRICT_DNS"
        (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        service_name, namespace = address["address"].split(".")[:2]
        assert namespace == "tollway"
        service = rendered.one("Service", service_name)
        assert address["port_value"] in {p["port"] for p in service["spec"]["ports"]}
        if cluster["name"] != "upstream":  # every pod, not one connection's pick
            assert service["spec"]["clusterIP"] == "None"
            target = {"tollway_authz": "tollway-authz", "tollway_usage_log": "tollway-receiver"}
            selected = rendered.one("Deployment", target[cluster["name"]])
            assert service["spec"]["selector"] == selected["spec"]["selector"]["matchLabels"]


def test_the_generated_envoy_configs_are_current():
    for name, source in KUBERNETES_FILES.items():
        assert (KUBE / "components" / "envoy" / name).read_text() == kubernetes_text(source), (
            "run: python -m devkit.envoy_config --kubernetes"
        )


def sources(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return rule["from"]


def test_only_envoy_reaches_authz_and_the_receivers():
    """Production's NetworkPolicies: ingress is denied by default; authz's check port and the
    receivers' access-log port admit Envoy's pods alone; every other port a policy opens is
    one its pods serve."""
    rendered = render("production")
    policies = {p["metadata"]["name"]: p["spec"] for p in rendered.find("NetworkPolicy")}
    assert policies.pop("default-deny-ingress") == {"podSelector": {}, "policyTypes": ["Ingress"]}
    envoy = {"podSelector": {"matchLabels": {"app": "tollway-envoy"}}}
    for deploy in rendered.find("Deployment"):
        name = deploy["metadata"]["name"]
        spec = policies[name]
        assert spec["podSelector"] == deploy["spec"]["selector"]
        served = {p["containerPort"] for p in rendered.container(name)["ports"]}
        by_port: dict[int, list[dict[str, Any]]] = {}
        for rule in spec["ingress"]:
            for port in rule["ports"]:
                assert port["port"] in served, (name, port)
                by_port.setdefault(port["port"], []).extend(sources(rule))
        if name in ("tollway-authz", "tollway-receiver"):
            cls = SETTINGS[name.removeprefix("tollway-")]
            settings = load(cls, rendered.env_of(rendered.container(name)))
            assert by_port[settings.port] == [envoy]
    assert policies.keys() == {d["metadata"]["name"] for d in rendered.find("Deployment")}


def test_the_ingress_exposes_envoy_the_portal_and_the_stripe_webhook_only():
    rendered = render("production")
    (ingress,) = rendered.find("Ingress")
    routes = set()
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            routes.add((rule["host"], path["path"], path["pathType"], backend["name"],
                        backend["port"]["number"]))  # fmt: skip
    portal_url = load(PortalSettings, rendered.env_of(rendered.container("tollway-portal")))
    hook = load(WebhookSettings, rendered.env_of(rendered.container("tollway-webhook")))
    portal_host = portal_url.public_url.removeprefix("https://")
    api_host = portal_url.api_url.removeprefix("https://")
    assert routes == {
        (api_host, "/", "Prefix", "tollway-envoy", 10000),
        (portal_host, "/", "Prefix", "tollway-portal", portal_url.port),
        (portal_host, "/webhooks/stripe", "Exact", "tollway-webhook", hook.port),
    }
    (tls,) = ingress["spec"]["tls"]
    assert set(tls["hosts"]) == {api_host, portal_host}
    # Behind the ingress controller: one proxy appends the client's address.
    assert portal_url.trusted_hops == hook.trusted_hops == 1
    assert hook.success_url.startswith(f"{portal_url.public_url}/welcome?session_id=")


def test_authz_scales_on_cpu_in_production():
    rendered = render("production")
    (hpa,) = rendered.find("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "tollway-authz"}  # fmt: skip
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert rendered.container("tollway-authz")["resources"]["requests"]["cpu"]


def test_the_dev_overlay_runs_what_compose_runs():
    """Redis never evicts and keeps an AOF, every service reads it, and the demo's parts run
    the commands docker-compose.yml gives them."""
    rendered = render("dev")
    redis = rendered.container("tollway-redis")
    assert redis["image"] == COMPOSE["services"]["redis"]["image"]
    args = redis["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert args[args.index("--appendonly") + 1] == "yes"
    env = rendered.env_of(rendered.container("tollway-authz"))
    port = rendered.one("Service", "tollway-redis")["spec"]["ports"][0]["port"]
    assert env["TOLLWAY_REDIS_URL"] == f"redis://tollway-redis:{port}/0"
    for name in ("upstream", "smtp"):
        compose = COMPOSE["services"][name]
        assert rendered.container(name)["command"] == compose["entrypoint"]
    standin = rendered.env_of(rendered.container("stripe-standin"))
    hook = load(WebhookSettings, rendered.env_of(rendered.container("tollway-webhook")))
    assert (
        standin["TOLLWAY_STANDIN_WEBHOOK_URL"]
        == f"http://tollway-webhook:{hook.port}/webhooks/stripe"
    )
    for name in ("webhook", "metering", "portal"):  # the services that call Stripe
        stripe = rendered.env_of(rendered.container(f"tollway-{name}"))["TOLLWAY_STRIPE_API_BASE"]
        assert stripe == f"http://stripe-standin:{standin['TOLLWAY_STANDIN_PORT']}"
