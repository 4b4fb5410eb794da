"""The README's code map matches the tree: every module is on the map, and the map names
nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "tollway",
    "authz",
    "webhook",
    "metering",
    "portal",
    "api",
    "tollway_client",
    "cli",
    "devkit",
)


def code_map() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme[readme.index("## Code map") :].split("\n## ", 1)[0]


def sections() -> dict[str, str]:
    """The map's text per top-level package: its bullet, from ``- **`pkg/`**`` to the next."""
    parts = re.split(r"^- \*\*`(\w+)/`\*\*", code_map(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_module_is_on_the_map_under_its_own_package():
    """Each .py module of the packages (but __init__ and __main__) is named in its own
    package's entry of the code map: one `settings.py` does not cover six packages."""
    by_package = sections()
    missing = [
        str(p.relative_to(ROOT))
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
        and f"`{p.name}`" not in by_package.get(pkg, "")
    ]
    assert missing == []


def test_the_map_names_only_what_exists():
    """Each module the map names in backticks exists in some package."""
    named = set(re.findall(r"`([a-z_]+\.py)`", code_map()))
    present = {p.name for pkg in (*PACKAGES, "bench") for p in (ROOT / pkg).rglob("*.py")}
    assert sorted(named - present) == []
