"""docker-compose.yml and the Dockerfile agree with the settings module, the Envoy config the
stack mounts is current and valid, and a Compose CLI accepts the file (`docker compose config`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.settings import ApiSettings
from authz.settings import AuthzSettings
from devkit import binaries
from devkit.envoy_config import COMPOSE_AUTHZ_PORTS, compose_text
from devkit.settings import DevSettings, StandinSettings
from metering.settings import MeteringSettings, ReceiverSettings
from portal.settings import PortalSettings
from tollway.settings import describe, load
from webhook.settings import WebhookSettings

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SETTINGS = {"authz": AuthzSettings, "webhook": WebhookSettings, "metering": MeteringSettings,
            "receiver": ReceiverSettings, "portal": PortalSettings,
            "stripe-standin": StandinSettings, "api": ApiSettings}  # fmt: skip
COMMANDS = {"receiver": ["metering", "receive"], "api": ["api", "serve"]}  # others: own name
KNOWN = {row[0] for cls in (*SETTINGS.values(), DevSettings) for row in describe(cls)}


# What scripts/compose-env.sh writes to .env: a fresh secret for each required variable.
REQUIRED_SECRETS = {"TOLLWAY_KEY_PEPPER", "STRIPE_WEBHOOK_SECRET", "TOLLWAY_USAGE_LOG_SECRET",
                    "TOLLWAY_PORTAL_SECRET", "TOLLWAY_BACKEND_TOKEN"}  # fmt: skip


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment with ${VAR:-default} and ${VAR-default} at their defaults,
    and each required ${VAR:?message} as a fresh secret (as scripts/compose-env.sh draws)."""
    drawn = lambda m: f"drawn-{os.urandom(16).hex()}"  # noqa: E731
    return {k: re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", drawn,
                      re.sub(r"\$\{[A-Z_]+:?-([^}]*)\}", r"\1", str(v)))
            for k, v in service.get("environment", {}).items()}  # fmt: skip


def test_every_service_is_there_with_health_checks_and_conditions():
    services = COMPOSE["services"]
    assert set(services) == {
        "redis",
        "authz",
        "webhook",
        "metering",
        "receiver",
        "portal",
        "api",
        "smtp",
        "stripe-standin",
        "upstream",
        "envoy",
    }
    assert services["envoy"]["image"].startswith("envoyproxy/envoy:v1.40")
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert cond == {"condition": "service_healthy"} and "healthcheck" in services[dep], (
                name,
                dep,
            )
    for name in SETTINGS:
        assert services[name]["healthcheck"]["test"] == ["CMD", "tollway", "health", name]
        want = COMMANDS.get(name, [name])
        assert services[name]["command"][: len(want)] == want


def test_environment_and_ports_agree_with_the_settings():
    services = COMPOSE["services"]
    for name, cls in SETTINGS.items():
        env = env_of(services[name])
        assert set(env) <= KNOWN, sorted(set(env) - KNOWN)
        settings = load(cls, env)  # every value is one the service accepts
        assert getattr(settings, "redis_url", "redis://redis:6379/0") == "redis://redis:6379/0"
    webhook = load(WebhookSettings, env_of(services["webhook"]))
    assert services["webhook"]["ports"] == [f"{webhook.port}:{webhook.port}"]
    assert load(StandinSettings, env_of(services["stripe-standin"])).webhook_url == (
        f"http://webhook:{webhook.port}/webhooks/stripe")  # fmt: skip
    portal = load(PortalSettings, env_of(services["portal"]))
    assert services["portal"]["ports"] == [f"{portal.port}:{portal.port}"]
    assert portal.webhook_url == f"http://webhook:{webhook.port}"
    assert env_of(services["webhook"])["TOLLWAY_CHECKOUT_SUCCESS_URL"].startswith(
        f"{portal.public_url}/welcome"
    )
    standin = load(StandinSettings, env_of(services["stripe-standin"]))
    assert standin.public_url in portal.stripe_pages.split()
    authz = services["authz"]["command"]
    workers = int(authz[authz.index("--workers") + 1])
    base = int(authz[authz.index("--worker-port-base") + 1])
    assert [base + i for i in range(workers)] == COMPOSE_AUTHZ_PORTS
    assert load(AuthzSettings, env_of(services["authz"])).port == AuthzSettings().port


def test_the_mounted_envoy_config_is_current_and_valid(tmp_path):
    (mount,) = COMPOSE["services"]["envoy"]["volumes"]
    source, target, _ = mount.split(":")
    assert (
        target == "/etc/envoy/envoy.yaml"
        and "/etc/envoy/envoy.yaml" in COMPOSE["services"]["envoy"]["command"]
    )
    path = ROOT / source
    assert path.read_text() == compose_text(), "run: python -m devkit.envoy_config --compose"
    listener = yaml.safe_load(path.read_text())["static_resources"]["listeners"][0]
    assert COMPOSE["services"]["envoy"]["ports"] == [
        f"{listener['address']['socket_address']['port_value']}:10000"
    ]
    proc = subprocess.run([binaries.envoy(), "--mode", "validate", "-c", str(path)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_dockerfile_runs_as_a_user_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2  # multi-stage
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert "HEALTHCHECK" in text and '["tollway", "health"]' in text
    assert 'ENTRYPOINT ["tollway"]' in text


def test_no_secret_has_a_default_in_compose():
    """Every secret variable is required (${VAR:?...}); none falls back to a value in the repo,
    and every value the repo ever shipped is refused by the settings loader."""
    text = (ROOT / "docker-compose.yml").read_text()
    for name in REQUIRED_SECRETS:
        assert re.search(rf"\$\{{{name}:\?", text), name
        assert not re.search(rf"\$\{{{name}:?-", text), name
    for name, value in (("TOLLWAY_KEY_PEPPER", "compose-demo-pepper-change-me"),
                        ("STRIPE_WEBHOOK_SECRET", "whsec_tollway_compose")):  # fmt: skip
        with pytest.raises(ValueError, match=f"{name} is a value published"):
            load(WebhookSettings, {name: value})


def compose_cli() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True,
                      check=False).returncode == 0:  # fmt: skip
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("no docker compose CLI here (scripts/ensure-compose.sh installs one as root)")


def test_compose_refuses_to_start_without_its_secrets(tmp_path):
    """Without .env (or the variables), `compose config` fails and names a missing secret."""
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED_SECRETS}
    empty = tmp_path / "empty.env"
    empty.write_text("")
    proc = subprocess.run([*compose_cli(), "-f", str(ROOT / "docker-compose.yml"),
                           "--env-file", str(empty), "config", "--quiet"],
                          capture_output=True, text=True, check=False, cwd=tmp_path, env=env)  # fmt: skip
    assert proc.returncode != 0
    assert any(name in proc.stderr for name in REQUIRED_SECRETS), proc.stderr[-2000:]


def test_compose_config_accepts_the_file(tmp_path):
    if (
        subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        argv = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        argv = ["docker-compose"]
    else:
        pytest.skip("no docker compose CLI here (scripts/ensure-compose.sh installs one as root)")
    env = {**os.environ, **{k: os.urandom(16).hex() for k in REQUIRED_SECRETS}}
    proc = subprocess.run([*argv, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                          capture_output=True, text=True, check=False, cwd=ROOT, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]


def dockerfile_copies() -> list[str]:
    """What the Dockerfile's build stage copies into the image's source tree."""
    text = (ROOT / "Dockerfile").read_text()
    build = text[: text.index("\nFROM ", text.index("FROM ") + 1)]  # up to the second stage
    out = []
    for line in build.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            out += line.split()[1:-1]
    return out


# Every command the compose file and the Istio manifests start, as argv after the image's
# entrypoint (`tollway`), or a whole argv where they replace the entrypoint.
IMAGE_COMMANDS = [["tollway", "authz"], ["tollway", "webhook"], ["tollway", "metering"],
                  ["tollway", "metering", "receive"], ["tollway", "portal"],
                  ["tollway", "stripe-standin"], ["tollway", "health"],
                  ["python", "-m", "devkit.mailsink"], ["python", "-m", "devkit.upstream"]]  # fmt: skip


@pytest.mark.timeout(300)
def test_the_wheel_of_what_the_dockerfile_copies_runs_every_command(tmp_path):
    """Built from exactly the Dockerfile's COPY sources and installed in a fresh venv (its
    dependencies from this one's site-packages, never this checkout's source): `tollway
    --help` and every command compose and the Istio manifests run start and know their
    flags, every module imports, and the Lua scripts, tier table and templates are there."""
    import sys
    import sysconfig

    src = tmp_path / "src"
    src.mkdir()
    for name in dockerfile_copies():
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    run = lambda *argv, **kw: subprocess.run(argv, capture_output=True, text=True, check=False,  # noqa: E731
                                             cwd=tmp_path, **kw)  # fmt: skip
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                "--quiet", "-w", str(tmp_path / "wheels"), str(src))  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("tollway-*.whl")
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", str(venv)).returncode == 0
    py, bin_dir = venv / "bin" / "python", venv / "bin"
    installed = run(str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    str(wheel))  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    # The dependencies, from this environment's site-packages (a path entry, so its .pth
    # files, this checkout's editable install among them, are not run).
    fresh_site = run(str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    deps = sysconfig.get_paths()["purelib"]
    (Path(fresh_site.stdout.strip()) / "deps.pth").write_text(deps + "\n")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    for argv in IMAGE_COMMANDS:
        exe = [str(bin_dir / argv[0]), *argv[1:]]
        out = run(*exe, "--help", env=env)
        assert out.returncode == 0 and "usage" in out.stdout, (argv, out.stderr[-2000:])
    check = run(str(py), "-c", IMPORT_ALL, env=env)
    assert check.returncode == 0, check.stderr[-2000:]
    assert str(tmp_path / "venv") in check.stdout and str(ROOT) not in check.stdout


IMPORT_ALL = """
import importlib, pkgutil
from pathlib import Path
for name in ("tollway", "authz", "webhook", "metering", "portal", "cli", "devkit"):
    pkg = importlib.import_module(name)
    for info in pkgutil.walk_packages(pkg.__path__, name + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
import tollway, portal
from tollway import scripts
scripts.lua("check")
assert (Path(tollway.__file__).parent / "data" / "tiers.toml").is_file()
assert (Path(portal.__file__).parent / "templates" / "base.html").is_file()
print(Path(tollway.__file__).resolve())
"""
