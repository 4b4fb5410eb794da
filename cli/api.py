"""``tollway api serve``: the management API (api/); ``tollway api openapi``: its OpenAPI
document; ``tollway api tokens create|list|revoke``: its operator tokens
(tollway/api_tokens.py). A token is printed once, when made; listings never show it.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from api import cli as api_cli
from cli.store_access import add_store_flags, settings_of, with_store
from tollway.api_tokens import SCOPES, ApiTokens
from tollway.errors import InvalidInput, NotFound
from tollway.key_store import KeyStore
from tollway.process import CliError, Subparsers
from tollway.settings import RedisSettings


def register(subparsers: Subparsers) -> None:
    api = subparsers.add_parser("api", help="the management API").add_subparsers(
        dest="api_command", required=True
    )
    serve = api.add_parser("serve", help="run the management API", description=api_cli.__doc__)
    api_cli.add_serve_flags(serve)
    api.add_parser("openapi", help="print the management API's OpenAPI document")
    tokens = api.add_parser("tokens", help="operator API tokens").add_subparsers(
        dest="tokens_command", required=True
    )
    create = tokens.add_parser("create", help="make a token; prints it, once")
    create.add_argument("--name", required=True, help="what the token is for, e.g. backend")
    create.add_argument(
        "--scope", action="append", required=True, help=f"repeatable: {', '.join(sorted(SCOPES))}"
    )
    add_store_flags(create)
    listing = tokens.add_parser("list", help="every token: id, name, scopes (never the token)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    add_store_flags(listing)
    revoke = tokens.add_parser("revoke", help="revoke a token for good")
    revoke.add_argument("token_id", metavar="ID")
    add_store_flags(revoke)


def run(args: argparse.Namespace) -> int:
    if args.api_command == "serve":
        return api_cli.run(args)
    if args.api_command == "openapi":
        return api_cli.print_openapi()
    settings = settings_of(RedisSettings, args)
    return with_store(settings, lambda store: _run(store, args))


def _tokens(store: KeyStore) -> ApiTokens:
    return ApiTokens(store.redis, store.hasher, store.audit)


async def _run(store: KeyStore, args: argparse.Namespace) -> int:
    tokens = _tokens(store)
    try:
        if args.tokens_command == "create":
            plaintext, token = await tokens.create(args.name, set(args.scope))
            print(plaintext)
            print(
                f"token {token.id} ({token.name}): {', '.join(sorted(token.scopes))}; "
                "shown once, store it now",
                file=sys.stderr,
            )
            return 0
        if args.tokens_command == "revoke":
            token = await tokens.revoke(args.token_id)
            print(f"token {token.id} ({token.name}) is revoked", file=sys.stderr)
            return 0
    except (InvalidInput, NotFound) as exc:
        raise CliError(str(exc)) from None
    listed = await tokens.listing()
    if args.json:
        print(json.dumps([t.public() for t in listed], indent=2))
        return 0
    for t in listed:
        made = datetime.fromtimestamp(t.created, UTC).strftime("%Y-%m-%d")
        state = "revoked" if t.revoked else "live"
        print(f"{t.id}  {state:<7}  {made}  {t.name:<20}  {','.join(sorted(t.scopes))}")
    return 0
