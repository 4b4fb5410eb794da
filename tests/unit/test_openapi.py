"""The management API's contract: generated from the models the handlers validate with, valid
OpenAPI 3.1, checked in, and complete."""

from __future__ import annotations

import json
from pathlib import Path

from openapi_spec_validator import validate

from api.openapi import document
from api.routes import OPERATIONS
from tollway.api_tokens import SCOPES

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "docs" / "api" / "openapi.json"


def test_the_document_is_valid_openapi_3_1():
    validate(document(OPERATIONS))


def test_the_checked_in_copy_is_current():
    """Regenerate with: tollway api openapi > docs/api/openapi.json"""
    assert json.loads(CHECKED_IN.read_text(encoding="utf-8")) == json.loads(
        json.dumps(document(OPERATIONS))
    )


def test_every_operation_names_a_known_scope_and_a_unique_id():
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids))
    assert {op.scope for op in OPERATIONS} <= SCOPES
    routes = [(op.method, op.path) for op in OPERATIONS]
    assert len(routes) == len(set(routes))


def test_every_error_answer_is_described():
    doc = document(OPERATIONS)
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            for status in ("401", "403", "429", "503"):
                assert status in op["responses"], (method, path, status)
