"""Settings: typed, frozen, loaded from a mapping."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from authz.settings import AuthzSettings
from devkit.settings import DevSettings
from tollway.settings import SettingsError, describe, load


def test_defaults_without_environment():
    """Every field has a default."""
    s = load(AuthzSettings, {})
    assert (s.port, s.metrics_port, s.store_timeout_ms, s.workers) == (9191, 9192, 100.0, 1)
    assert s.redis_url == "redis://127.0.0.1:6379/0"


def test_values_are_converted_by_type():
    """Ints, floats, paths and strings are parsed from their variables."""
    s = load(
        AuthzSettings,
        {
            "TOLLWAY_AUTHZ_PORT": "7000",
            "TOLLWAY_STORE_TIMEOUT_MS": "12.5",
            "TOLLWAY_TIERS": "/etc/tiers.toml",
            "TOLLWAY_REDIS_URL": "redis://r:1/2",
            "UNRELATED": "x",
        },
    )
    assert (s.port, s.store_timeout_ms, s.tiers, s.redis_url) == (
        7000, 12.5, Path("/etc/tiers.toml"), "redis://r:1/2",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TOLLWAY_AUTHZ_PORT": "http"}, "TOLLWAY_AUTHZ_PORT='http': expected int"),
        ({"TOLLWAY_AUTHZ_WORKERS": "-2"}, "TOLLWAY_AUTHZ_WORKERS='-2': must not be negative"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    """A bad value raises SettingsError naming the variable and value."""
    with pytest.raises(SettingsError) as err:
        load(AuthzSettings, env)
    assert str(err.value) == message


def test_settings_are_frozen():
    """Settings cannot be changed after loading."""
    s = load(DevSettings, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.envoy_port = 1  # type: ignore[misc]


def test_every_field_is_documented():
    """describe() lists a variable and a doc line for every field."""
    rows = describe(DevSettings)
    assert len(rows) == len(dataclasses.fields(DevSettings))
    assert all(var.startswith("TOLLWAY_") and doc for var, _, doc in rows)


def test_a_cluster_is_chosen_by_url_or_by_setting():
    by_url = load(AuthzSettings, {"TOLLWAY_REDIS_URL": "redis+cluster://10.0.0.5:7000"})
    by_flag = load(
        AuthzSettings, {"TOLLWAY_REDIS_URL": "redis://10.0.0.5:7000", "TOLLWAY_REDIS_CLUSTER": "1"}
    )
    assert by_url.redis_url == by_flag.redis_url == "redis+cluster://10.0.0.5:7000"
    assert load(AuthzSettings, {}).redis_url.startswith("redis://")


def test_an_unknown_redis_scheme_is_a_clear_error():
    with pytest.raises(
        SettingsError,
        match="TOLLWAY_REDIS_URL='http://x': expected a URL starting with one of redis://",
    ):
        load(AuthzSettings, {"TOLLWAY_REDIS_URL": "http://x"})


def test_authz_mode_is_grpc_or_http():
    """TOLLWAY_AUTHZ_MODE picks Envoy's ext_authz transport; anything else names the variable."""
    assert load(AuthzSettings, {}).mode == "grpc"
    assert load(AuthzSettings, {"TOLLWAY_AUTHZ_MODE": "http"}).mode == "http"
    with pytest.raises(SettingsError, match="TOLLWAY_AUTHZ_MODE='rest'"):
        load(AuthzSettings, {"TOLLWAY_AUTHZ_MODE": "rest"})


# Each secret variable: where the Istio manifest shows a value for it, and a service that reads
# it (with what else that service needs to start).
FRESH = "4f1d0c5e9a7b3c2d1e0f9a8b7c6d5e4f"
SECRET_VARIABLES = {
    "TOLLWAY_KEY_PEPPER": ("key-pepper", "authz", {}),
    "STRIPE_WEBHOOK_SECRET": ("stripe-webhook-secret", "webhook", {}),
    "TOLLWAY_USAGE_LOG_SECRET": ("usage-log-secret", "authz", {}),
    "TOLLWAY_PORTAL_SECRET": ("portal-secret", "portal", {}),
    "TOLLWAY_BACKEND_TOKEN": ("backend-token", "webhook", {}),
    "TOLLWAY_ALERT_WEBHOOK_SECRET": ("alert-webhook-secret", "portal",
                                     {"TOLLWAY_ALERT_WEBHOOK_URL": "https://ops.example/h"}),
}  # fmt: skip


# The placeholders the Istio manifests' Secret once held (the manifests now hold no Secret):
# copies of them live on in operators' repositories.
PLACEHOLDERS = ("REPLACE_WITH_A_LONG_RANDOM_STRING", "whsec_REPLACE_ME", "change-me")


@pytest.mark.parametrize("variable", sorted(SECRET_VARIABLES))
def test_a_secret_the_repo_publishes_is_refused(variable):
    """A placeholder the manifests once held, and every default the repo once shipped, stop
    the service from starting, with the variable named and the value unsaid; a fresh value
    starts it. Each is a key of the Secret the Kubernetes manifests reference."""
    from portal.settings import PortalSettings
    from tests.kube import secret_keys
    from tollway.settings import PUBLISHED_SECRETS
    from webhook.settings import WebhookSettings

    where, service, more = SECRET_VARIABLES[variable]
    cls = {"authz": AuthzSettings, "webhook": WebhookSettings, "portal": PortalSettings}[service]
    base = {"TOLLWAY_PORTAL_SECRET": FRESH, **more} if service == "portal" else {}
    assert where in secret_keys()
    placeholder = PLACEHOLDERS[0]
    for value in (*PLACEHOLDERS, *PUBLISHED_SECRETS, f"whsec_{FRESH},{placeholder}"):
        with pytest.raises(SettingsError, match=f"^{variable} is a value published") as info:
            load(cls, {**base, variable: value})
        assert value not in str(info.value)
    field = next(f.name for f in dataclasses.fields(cls) if f.metadata.get("env") == variable)
    assert getattr(load(cls, {**base, variable: FRESH}), field) == FRESH


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"TOLLWAY_TLS_CERT": "{cert}"}, "go together"),
        ({"TOLLWAY_TLS_KEY": "{key}"}, "go together"),
        ({"TOLLWAY_TLS_CLIENT_CA": "{cert}"}, "set TOLLWAY_TLS_CERT and TOLLWAY_TLS_KEY too"),
        ({"TOLLWAY_TLS_CERT": "{cert}", "TOLLWAY_TLS_KEY": "/nonexistent.key"}, "TOLLWAY_TLS_KEY="),
        ({"TOLLWAY_TLS_CERT": "{cert}", "TOLLWAY_TLS_KEY": "{key}",
          "TOLLWAY_TLS_CLIENT_CA": "/nonexistent.pem"}, "TOLLWAY_TLS_CLIENT_CA="),
    ],
)  # fmt: skip
def test_tls_settings_that_cannot_work_are_refused_at_start(tmp_path, env, says):
    """A certificate without its key (or a key alone), a client CA without TLS, or a file that
    is not there: authz and the receiver refuse to start, naming the variable."""
    from metering.settings import ReceiverSettings

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    filled = {k: v.format(cert=cert, key=key) for k, v in env.items()}
    for cls, base in ((AuthzSettings, {}), (ReceiverSettings, {"TOLLWAY_USAGE_LOG_SECRET": FRESH})):
        with pytest.raises(SettingsError, match=re.escape(says)):
            load(cls, {**base, **filled})
    ok = load(AuthzSettings, {"TOLLWAY_TLS_CERT": str(cert), "TOLLWAY_TLS_KEY": str(key)})
    assert ok.tls_cert == str(cert) and not ok.tls_client_ca
