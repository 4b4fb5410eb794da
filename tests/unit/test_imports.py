"""The layout's import rules, read from the source: who may import whom.

- the kernel (tollway) imports no service, and neither the command line nor the dev kit;
- a service (authz, webhook, metering, portal, api) imports no other service (but the API,
  authz's check engine and the lean HTTP front its verify listener runs on), nor cli or
  devkit;
- the dev kit imports no service: it starts them as processes;
- the command line imports a service only through its public modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNEL, SERVICES, CLI, DEVKIT = (
    "tollway",
    ("authz", "webhook", "metering", "portal", "api"),
    "cli",
    "devkit",
)
# What a service offers the command line: its commands, its settings, and metering's ledger
# and usage report (what `tollway usage` and `tollway reconcile` read).
PUBLIC = {
    "authz": {"authz", "authz.cli", "authz.settings"},
    "webhook": {"webhook.cli", "webhook.settings"},
    "metering": {"metering.cli", "metering.settings", "metering.ledger"},
    "portal": {"portal.cli", "portal.settings"},
    "api": {"api", "api.cli", "api.settings"},
}


# What the management API may import of authz (see test_a_service_imports_no_other_service):
# the check engine verify runs, and the lean HTTP front verify's own listener is served by.
ENGINE = {
    "authz.engine",
    "authz.engine.CheckEngine",
    "authz.settings",
    "authz.settings.CheckSettings",
    "authz.http_front",
    "authz.http_front.HttpFront",
    "authz.http_connection",
    "authz.http_connection.Connection",
    "authz.http_connection.HttpLimits",
    "authz.http_connection.Request",
    "authz.http_wire",
    "authz.http_wire.error",
    "authz.http_wire.health",
    "authz.http_wire.json_answer",
}


def imports_of(package: str) -> list[tuple[str, str]]:
    """(file, imported module) for every import in ``package``'s source."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                base = node.module
                found += [(str(path.relative_to(ROOT)), f"{base}.{a.name}") for a in node.names]
                found.append((str(path.relative_to(ROOT)), base))
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def forbidden(package: str, banned: set[str]) -> list[tuple[str, str]]:
    return [(f, m) for f, m in imports_of(package) if top(m) in banned]


def test_the_kernel_imports_no_service_nor_cli_nor_devkit():
    """tollway/ is what every service shares, so it can depend on none of them."""
    assert forbidden(KERNEL, {*SERVICES, CLI, DEVKIT}) == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service):
    """A service reaches another service's state only through the kernel (e.g. dead letters).
    One exception, by design: the management API's verify serves authz's check engine, so
    that a call outside Envoy gets the one decision (authz.engine, with its settings)."""
    others = {s for s in SERVICES if s != service}
    allowed = ENGINE if service == "api" else set()
    assert [(f, m) for f, m in forbidden(service, {*others, CLI, DEVKIT}) if m not in allowed] == []


def test_the_dev_kit_imports_no_service():
    """The dev kit runs the services as processes; it does not reach into them."""
    assert forbidden(DEVKIT, {*SERVICES, CLI}) == []


def test_the_command_line_uses_only_the_services_public_modules():
    """cli/ imports a service's commands and settings (and metering's ledger), never its
    internals; names imported from a public module are allowed too."""
    wrong = []
    for f, m in imports_of(CLI):
        service = top(m)
        if service not in SERVICES:
            continue
        public = PUBLIC[service]
        if m not in public and m.rsplit(".", 1)[0] not in public:
            wrong.append((f, m))
    assert wrong == []


def test_the_rules_see_a_violation():
    """The walker finds an import, so the rules above can fail."""
    assert ("cli/main.py", "authz.cli") in imports_of(CLI)
    assert any(m.startswith("tollway.") for _, m in imports_of("authz"))


def test_the_python_client_needs_only_the_api_models():
    """tollway_client is the operator's backend's dependency: of tollway, only the API's
    models (the one source of its schemas), never the services or the kernel."""
    ours = {"tollway", *SERVICES, CLI, DEVKIT}
    used = {m for _, m in imports_of("tollway_client") if top(m) in ours}
    assert {m.split(".")[0] + "." + m.split(".")[1] for m in used} <= {"api.models"}
