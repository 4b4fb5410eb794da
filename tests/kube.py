"""The Kubernetes manifests as `kubectl kustomize` renders them (deploy/kubernetes), for the
tests that hold them to the settings modules and to each other."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devkit import binaries

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production", "istio", "istio-http")
SECRET = "tollway-secrets"


def secret_keys() -> list[str]:
    """The keys secrets.example.env lists: every key the Secret holds."""
    lines = (KUBE / "secrets.example.env").read_text().splitlines()
    return [line.split("=", 1)[0] for line in lines if line and not line.startswith("#")]


@functools.cache
def _rendered(overlay: str, components: tuple[str, ...]) -> str:
    """The overlay rendered from a copy of deploy/kubernetes, whose dev secrets are drawn by
    scripts/k8s-dev-secrets.sh as a developer's would be (the repository has none); with
    ``components``, from an overlay of it that adds those, as an operator's would."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "kubernetes"
        shutil.copytree(KUBE, copy, ignore=shutil.ignore_patterns("secrets.env"))
        subprocess.run([str(ROOT / "scripts" / "k8s-dev-secrets.sh"), str(copy)],
                       check=True, capture_output=True)  # fmt: skip
        target = copy / "overlays" / overlay
        if components:
            target = copy / "overlays" / "operator"
            target.mkdir()
            (target / "kustomization.yaml").write_text(yaml.safe_dump({
                "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "resources": [f"../{overlay}"],
                "components": [f"../../components/{c}" for c in components]}))  # fmt: skip
        proc = subprocess.run([binaries.kubectl(), "kustomize", str(target)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout


@dataclass(frozen=True)
class Rendered:
    """One overlay's objects."""

    overlay: str
    docs: list[dict[str, Any]]

    def find(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        return [
            d
            for d in self.docs
            if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
        ]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        (found,) = self.find(kind, name)
        return found

    def named(self, kind: str, prefix: str) -> dict[str, Any]:
        """The generated object whose name is ``prefix`` and kustomize's content hash."""
        (found,) = [d for d in self.find(kind) if d["metadata"]["name"].startswith(prefix + "-")]
        return found

    def container(self, deployment: str) -> dict[str, Any]:
        spec = self.one("Deployment", deployment)["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        return container

    def env_of(self, container: dict[str, Any]) -> dict[str, str]:
        """The container's environment as Kubernetes would set it: its ConfigMaps' values,
        then its own. Each secret reference is checked against the Secret's keys and given a
        fresh value: the dev overlay draws its own, and every other overlay has none to read."""
        out: dict[str, str] = {}
        for source in container.get("envFrom", []):
            name = source["configMapRef"]["name"]
            out.update(self.one("ConfigMap", name)["data"])
        for e in container.get("env", []):
            if "value" in e:
                out[e["name"]] = str(e["value"])
                continue
            ref = e["valueFrom"]["secretKeyRef"]
            assert ref["name"].split("-")[:2] == SECRET.split("-"), e
            assert ref["key"] in secret_keys(), e
            out[e["name"]] = f"fresh-{os.urandom(16).hex()}"
        return out


def render(overlay: str, components: tuple[str, ...] = ()) -> Rendered:
    """``overlay`` (one of OVERLAYS) as kustomize renders it, with ``components`` added."""
    text = _rendered(overlay, components)
    return Rendered(overlay, [d for d in yaml.safe_load_all(text) if d])
