"""schemathesis against the live management API (its own process, on the test's real Redis):
every operation, generated from the checked-in document, must answer without a 5xx and as
the document says (status codes, content type, body schema), refuse what a missing token
sends, and hold up its stateful links (create a key, then get, update, rotate, suspend and
revoke it). Bounded: a fixed number of examples per operation."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import API_PEPPER as PEPPER
from tollway.api_tokens import SCOPES, ApiTokens
from tollway.audit import AuditLog
from tollway.keys import KeyHasher

pytestmark = pytest.mark.integration

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,ignored_auth,use_after_free,ensure_resource_availability"
)
EXAMPLES = 25


async def test_every_operation_answers_as_its_document_says(api_process, redis, tmp_path):
    port, log, _ = api_process
    token, _ = await ApiTokens(redis, KeyHasher(PEPPER.encode()), AuditLog(redis)).create(
        "schemathesis", set(SCOPES)
    )
    st = Path(sys.executable).parent / "st"
    run = await asyncio.to_thread(
        subprocess.run,
        [str(st), "run", f"http://127.0.0.1:{port}/v1/openapi.json",
         "-H", f"Authorization: Bearer {token}", "--checks", CHECKS,
         "--max-examples", str(EXAMPLES), "--no-color"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    failures = run.stdout[run.stdout.find("FAILURES") :][:8000]
    assert run.returncode == 0, failures + run.stderr[-2000:]
    logged = log.read_text()
    assert '"unhandled"' not in logged, logged[-4000:]  # a bug of ours (api/app.py)
    assert token not in logged
