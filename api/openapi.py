"""The OpenAPI 3.1 document, generated from the operations table and its pydantic models: the
contract is what the handlers validate with. Checked in as docs/api/openapi.json (a test
fails when that copy is stale: regenerate it with ``tollway api openapi > docs/api/openapi.json``)
and served at ``GET /v1/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.models import Body, Error
from api.operations import PATH_PATTERNS, Operation

VERSION = "1.0.0"
ERRORS = {
    400: "The request cannot be used: the error names the field",
    401: "No live API token",
    403: "The token lacks the operation's scope",
    404: "No such key, account or route",
    409: "The state refuses the change, or the Idempotency-Key is in use or was used with "
    "another request",
    429: "The token's requests per second are spent",
    503: "The store cannot answer now; retry",
}
REF = "#/components/schemas/{model}"


def _models(operations: list[Operation]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = [Error]
    for op in operations:
        for model in (op.answer, op.body):
            if model is not None and model not in seen:
                seen.append(model)
    return seen


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema["properties"].items():
        description = prop.pop("description", None)
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        out.append(param)
    return out


# What an answer names, for OpenAPI links: (answer model, the id's place in it) -> the path
# parameter it fills. A key made or read links to every operation on that key, and so on,
# so that a client (and schemathesis's stateful phase) can follow create → get → rotate.
LINKS = {
    ("Key", "$response.body#/id"): "key_id",
    ("CreatedKey", "$response.body#/id"): "key_id",
    ("Account", "$response.body#/id"): "account",
}


def _links(op: Operation, operations: list[Operation]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (model, where), param in LINKS.items():
        if op.answer.__name__ != model:
            continue
        for target in operations:
            if param in target.params and target is not op:
                out[f"{target.operation_id}"] = {
                    "operationId": target.operation_id,
                    "parameters": {param: where},
                }
    return out


def _operation(op: Operation, operations: list[Operation]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": PATH_PATTERNS[name]},
        }
        for name in op.params
    ]
    if op.query is not None:
        params += _query_parameters(op.query)
    if op.method == "POST":
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "the same key and request replay the first answer for 24 h",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    answers: dict[str, Any] = {
        "200": {
            "description": "OK",
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=op.answer.__name__)}}
            },
        }
    }
    links = _links(op, operations)
    if links:
        answers["200"]["links"] = links
    error = {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}
    always = {401, 403, 429, 503} | ({409} if op.method == "POST" else set())
    for status in sorted({*op.errors, *always}):
        answers[str(status)] = {"description": ERRORS[status], "content": error}
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "security": [{"token": [op.scope]}],
        "x-scope": op.scope,
        "parameters": params,
        "responses": answers,
    }
    if op.body is not None:
        out["requestBody"] = {
            "required": op.method != "PATCH",
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=op.body.__name__)}}
            },
        }
    return out


def document(operations: list[Operation]) -> dict[str, Any]:
    modes = [
        (m, "validation" if issubclass(m, Body) else "serialization") for m in _models(operations)
    ]
    _, schemas = models_json_schema(modes, ref_template=REF)  # type: ignore[arg-type]
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, operations)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tollway management API",
            "version": VERSION,
            "description": "Create, verify, limit and audit API keys from your own backend. "
            "Authenticate with an operator token: Authorization: Bearer twa_…",
        },
        "servers": [{"url": "http://127.0.0.1:8084"}],
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
    }
