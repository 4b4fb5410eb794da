"""Operator API tokens against a real Redis: shown once, kept only as a digest, scoped,
revoked for good, every change audited; the CLI around them."""

from __future__ import annotations

import json

import pytest

from cli.main import main as cli
from tests.support import redis_dump
from tollway.api_tokens import ApiTokens, looks_like_token
from tollway.audit import AuditLog
from tollway.errors import InvalidInput, NotFound
from tollway.keys import KeyHasher, generate_key

pytestmark = pytest.mark.integration


async def test_a_token_authenticates_by_its_digest_until_revoked(redis):
    tokens = ApiTokens(redis, KeyHasher(b"pepper"), AuditLog(redis))
    plaintext, token = await tokens.create("backend", {"keys:write", "usage:read"})
    assert looks_like_token(plaintext) and not looks_like_token(generate_key())
    assert plaintext not in await redis_dump(redis)  # only its digest is kept
    found = await tokens.authenticate(plaintext)
    assert found == token and found.allows("keys:write") and not found.allows("audit:read")
    forged = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")  # well formed, unknown
    assert await tokens.authenticate(forged) is None
    assert await tokens.authenticate("Bearer " + plaintext) is None
    assert await tokens.authenticate(generate_key()) is None  # an API key is not a token
    revoked = await tokens.revoke(token.id)
    assert revoked.revoked and not revoked.allows("keys:write")
    assert await tokens.authenticate(plaintext) is None
    assert (await tokens.revoke(token.id)).revoked == revoked.revoked  # once, for good
    assert [t.public()["id"] for t in await tokens.listing()] == [token.id]
    audit = await AuditLog(redis).entries(target=f"token:{token.id}")
    assert [(e.actor, e.action) for e in audit] == [("cli", "revoked"), ("cli", "created")]


async def test_bad_names_scopes_and_ids_are_refused_and_change_nothing(redis):
    tokens = ApiTokens(redis, KeyHasher(), AuditLog(redis))
    for name, scopes in (("", {"verify"}), ("x" * 65, {"verify"}), ("a\nb", {"verify"}),
                         ("backend", set()), ("backend", {"keys:admin"})):  # fmt: skip
        with pytest.raises(InvalidInput):
            await tokens.create(name, scopes)
    for token_id in ("0123456789abcdef", "../../etc", "x" * 400):
        with pytest.raises(NotFound):
            await tokens.revoke(token_id)
    assert await tokens.listing() == [] and await AuditLog(redis).entries() == []


def test_the_cli_prints_a_token_once_and_never_again(redis_server, tiers_file, capsys):
    url = ["--redis-url", redis_server, "--tiers", str(tiers_file)]
    argv = ["api", "tokens", "create", "--name", "backend", "--scope", "verify", *url]
    assert cli(argv) == 0
    out = capsys.readouterr()
    plaintext = out.out.strip()
    assert looks_like_token(plaintext) and "shown once" in out.err
    assert cli(["api", "tokens", "list", "--json", *url]) == 0
    listed = capsys.readouterr().out
    assert plaintext not in listed
    (token,) = json.loads(listed)
    assert token["name"] == "backend" and token["scopes"] == ["verify"] and token["revoked"] is None
    assert cli(["api", "tokens", "revoke", token["id"], *url]) == 0
    assert cli(["api", "tokens", "revoke", "0123456789abcdef", *url]) == 1
    assert "no API token" in capsys.readouterr().err
    assert cli(["api", "tokens", "create", "--name", "x", "--scope", "root", *url]) == 1
    assert "unknown: root" in capsys.readouterr().err
