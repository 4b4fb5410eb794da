"""The README's code map matches the tree: every module is on the map, and the map names
nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tollway", "authz", "webhook", "metering", "portal", "cli", "devkit")


def code_map() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme[readme.index("## Code map") :].split("\n## ", 1)[0]


def test_every_module_is_on_the_map():
    """Each .py module of the packages (but __init__ and __main__) is named in the code map."""
    text = code_map()
    modules = {
        p.name
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    }
    assert sorted(m for m in modules if f"`{m}`" not in text) == []


def test_the_map_names_only_what_exists():
    """Each module the map names in backticks exists in some package."""
    named = set(re.findall(r"`([a-z_]+\.py)`", code_map()))
    present = {p.name for pkg in (*PACKAGES, "bench") for p in (ROOT / pkg).rglob("*.py")}
    assert sorted(named - present) == []
