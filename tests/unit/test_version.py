"""`tollway --version` and `tollway_build_info` say the installed version, pyproject.toml's."""

from __future__ import annotations

import platform
import tomllib
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from cli.main import main
from tollway import version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_version_is_pyprojects_and_the_cli_says_it(capsys):
    assert version.version() == PYPROJECT
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"tollway {PYPROJECT}"


def test_every_service_exports_its_build_info():
    version.export()
    labels = {"version": PYPROJECT, "python": platform.python_version()}
    assert REGISTRY.get_sample_value("tollway_build_info", labels) == 1
