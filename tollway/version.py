"""Which tollway this is: the installed distribution's version (pyproject.toml), shown by
``tollway --version`` and exported by every service as ``tollway_build_info{version,python}``
(1), so that a dashboard or an alert can tell which version each process runs (during a
rolling upgrade, two)."""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client import Info


def version() -> str:
    try:
        return metadata.version("tollway")
    except metadata.PackageNotFoundError:  # run from a tree that was never installed
        return "unknown"


BUILD_INFO = Info("tollway_build", "Which tollway this process runs: its version and Python's")


def export() -> None:
    """Set ``tollway_build_info`` in this process's default registry."""
    BUILD_INFO.info({"version": version(), "python": platform.python_version()})
