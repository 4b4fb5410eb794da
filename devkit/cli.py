"""``tollway dev``: run the whole stack locally, print a demo key and curl lines to try.

Ctrl-C or SIGTERM stops every child; a child that dies stops the stack with its exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devkit.binaries import MissingBinary
from devkit.seed import seed_prices
from devkit.settings import DevSettings
from devkit.stack import Ports, Stack
from tollway.api_tokens import SCOPES, ApiTokens
from tollway.clock import WallClock
from tollway.key_store import KeyStore
from tollway.keys import KeyHasher
from tollway.lifecycle import Lifecycle
from tollway.process import Subparsers
from tollway.redis_client import connect
from tollway.settings import SettingsError, with_flags
from tollway.tiers import Tier, TierError, load_tiers

DEMO_TIER = "free"
COLORS = {
    "redis": 31,
    "authz": 32,
    "upstream": 33,
    "envoy": 35,
    "webhook": 36,
    "standin": 34,
    "metering": 37,
    "receiver": 37,
    "portal": 36,
    "mailsink": 33,
    "api": 32,
}
_print_lock = threading.Lock()


def _sink(name: str, line: str) -> None:
    color = COLORS.get(name, 0) if sys.stdout.isatty() else 0
    label = f"\x1b[{color}m{name:>8}\x1b[0m" if color else f"{name:>8}"
    with _print_lock:
        print(f"{label} | {line}", flush=True)


def register(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("dev", help="run the whole local stack", description=__doc__)
    p.add_argument("--port", type=int, help="Envoy listener port (TOLLWAY_ENVOY_PORT, 10000)")
    p.add_argument(
        "--admin-port", type=int, help="Envoy admin port (TOLLWAY_ENVOY_ADMIN_PORT, 9901)"
    )
    p.add_argument(
        "--authz-mode",
        choices=("grpc", "http"),
        help="Envoy's ext_authz transport, and envoy.yaml or envoy-http.yaml "
        "(TOLLWAY_AUTHZ_MODE, grpc)",
    )
    p.add_argument("--authz-port", type=int, help="authz port (TOLLWAY_AUTHZ_PORT, 9191)")
    p.add_argument(
        "--metrics-port", type=int, help="authz metrics (TOLLWAY_AUTHZ_METRICS_PORT, 9192)"
    )
    p.add_argument("--upstream-port", type=int, help="echo upstream (TOLLWAY_UPSTREAM_PORT, 8080)")
    p.add_argument("--redis-port", type=int, help="own redis-server (TOLLWAY_DEV_REDIS_PORT, 6380)")
    p.add_argument("--webhook-port", type=int, help="webhook service (TOLLWAY_WEBHOOK_PORT, 8081)")
    p.add_argument("--standin-port", type=int, help="Stripe stand-in (TOLLWAY_STANDIN_PORT, 12111)")
    p.add_argument("--metering-port", type=int, help="metering (TOLLWAY_METERING_PORT, 8082)")
    p.add_argument(
        "--receiver-port",
        type=int,
        help="access-log receiver (TOLLWAY_ACCESSLOG_PORT, 9193)",
    )
    p.add_argument(
        "--receiver-metrics-port",
        type=int,
        help="its /metrics (TOLLWAY_ACCESSLOG_METRICS_PORT, 9194)",
    )
    p.add_argument("--portal-port", type=int, help="customer portal (TOLLWAY_PORTAL_PORT, 8083)")
    p.add_argument("--api-port", type=int, help="management API (TOLLWAY_API_PORT, 8084)")
    p.add_argument(
        "--api-verify-port", type=int, help="its verify listener (TOLLWAY_API_VERIFY_PORT, 8085)"
    )
    p.add_argument("--smtp-port", type=int, help="the SMTP sink (TOLLWAY_SMTP_PORT, 2525)")
    p.add_argument("--redis-url", help="use this Redis instead of starting one (TOLLWAY_REDIS_URL)")
    p.add_argument("--tiers", type=Path, help="tier table (TOLLWAY_TIERS)")


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> tuple[DevSettings, bool]:
    """The dev settings, and whether to run our own Redis (only when no URL was given)."""
    flags = {
        "envoy_port": args.port,
        "envoy_admin_port": args.admin_port,
        "authz_mode": args.authz_mode,
        "authz_port": args.authz_port,
        "authz_metrics_port": args.metrics_port,
        "upstream_port": args.upstream_port,
        "redis_port": args.redis_port,
        "webhook_port": args.webhook_port,
        "standin_port": args.standin_port,
        "metering_port": args.metering_port,
        "receiver_port": args.receiver_port,
        "receiver_metrics_port": args.receiver_metrics_port,
        "portal_port": args.portal_port,
        "api_port": args.api_port,
        "api_verify_port": args.api_verify_port,
        "smtp_port": args.smtp_port,
        "redis_url": args.redis_url,
        "tiers": args.tiers,
    }
    own_redis = args.redis_url is None and "TOLLWAY_REDIS_URL" not in environ
    settings = with_flags(DevSettings, environ, flags)
    return settings, own_redis


async def _demo_key(stack: Stack, tier: Tier, hasher: KeyHasher) -> tuple[str, str, str]:
    """A demo key on ``tier`` for cus_demo, and a management API token of every scope: (key,
    key id, token)."""
    redis = connect(stack.effective_redis_url, timeout_s=5.0)
    try:
        lifecycle = Lifecycle(KeyStore(redis, hasher), WallClock(), actor="dev")
        plaintext, record = await lifecycle.create(tier.name, "cus_demo")
        token, _ = await ApiTokens(redis, hasher, lifecycle.audit).create(
            "tollway dev", set(SCOPES), actor="dev"
        )
    finally:
        await redis.aclose()
    return plaintext, record.key_id, token


def api_banner(stack: Stack, token: str) -> str:
    api = f"http://127.0.0.1:{stack.ports.api}"
    verify = f"http://127.0.0.1:{stack.ports.api_verify}"
    auth = f"-H 'Authorization: Bearer {token}'"
    return f"""
The management API ({api}/v1/openapi.json; README "Management API"), with a token of every scope:
  export TOLLWAY_API_TOKEN={token}
  curl -s {api}/v1/keys {auth} -d '{{"tier": "pro", "customer": "cus_backend", "external_id": "user-1"}}'   # a key, shown once
  curl -s '{api}/v1/keys?external_id=user-1' {auth}   # its keys, never the key
  curl -s '{api}/v1/audit?limit=5' {auth}   # who changed what
  curl -s {verify}/v1/keys/verify {auth} -d '{{"key": "<a key>"}}'   # verify, on its own lean port
"""


def banner(stack: Stack, tier: Tier, key: str, key_id: str) -> str:
    url = stack.url
    tollway = shlex.quote(str(Path(sys.executable).parent / "tollway"))
    redis = f"--redis-url {stack.effective_redis_url}"
    h = f"-H 'x-api-key: {key}'"
    burst = tier.burst + 3
    stripe = stripe_banner(stack)
    return f"""
tollway dev stack is up
  Envoy     {url}   (admin http://127.0.0.1:{stack.ports.envoy_admin})
  authz     127.0.0.1:{stack.ports.authz}   (metrics http://127.0.0.1:{stack.ports.authz_metrics}/metrics)
  upstream  http://127.0.0.1:{stack.ports.upstream}   (echoes; /status/<code>, /usage/<n>, /reset)
  receiver  127.0.0.1:{stack.ports.receiver}   (Envoy's access log; metrics http://127.0.0.1:{stack.ports.receiver_metrics}/metrics)
  redis     {stack.effective_redis_url}
  portal    http://127.0.0.1:{stack.ports.portal}   (pricing, Subscribe, free sign-up, dashboard; mailed links and alerts print on the mailsink lines)
  api       http://127.0.0.1:{stack.ports.api}   (the management API; verify also on :{stack.ports.api_verify})

Demo key on tier "{tier.name}" ({tier.burst} burst, {tier.requests_per_second:g}/s, \
{tier.monthly_quota or "unlimited"} a month), key id {key_id}:
  export TOLLWAY_DEMO_KEY={key}

Try:
  curl -i {url}/hello {h}            # 200: the upstream's echo, with x-tollway-* headers
  curl -i {url}/hello                # 401 missing_api_key
  curl -i {url}/hello -H 'x-api-key: tw_live_typo'   # 401 invalid_api_key
  for i in $(seq {burst}); do curl -s -o /dev/null -w '%{{http_code}} ' {url}/hello {h}; done; echo   # 200s, then 429
  curl -i {url}/v1/analytics {h}     # 403 feature_not_in_plan
  {tollway} keys suspend {key_id} {redis} && curl -i {url}/hello {h}   # 402 payment_required
  {tollway} keys resume {key_id} {redis}
  {tollway} keys create --tier pro {redis}   # another key, on another tier
  {tollway} keys create --tier {tier.name} --customer cus_demo {redis}   # a second key: same account, same limits
  {tollway} accounts show cus_demo {redis}   # the account: plan, use this period, its keys
  {tollway} accounts set-limits cus_demo --burst 2 {redis}   # its own limits, at the next request
  curl -i {url}/status/503 {h}       # 503 from the upstream: counted, then refunded (not billed)
  curl -i {url}/usage/42 {h}         # 200; x-tollway-usage: 42 is removed, and billed on a tier with usage_meter
{stripe}
Ctrl-C stops everything.
"""


def stripe_banner(stack: Stack) -> str:
    if not stack.standin:
        return "\nStripe: using STRIPE_API_KEY / TOLLWAY_STRIPE_API_BASE from the environment.\n"
    hook = f"http://127.0.0.1:{stack.ports.webhook}"
    tollway = shlex.quote(str(Path(sys.executable).parent / "tollway"))
    trig = f"{tollway} stripe trigger --standin-url {stack.standin_url}"
    return f"""
Subscribe through the Stripe stand-in (webhooks go to {hook}/webhooks/stripe):
  URL=$(curl -s -X POST {hook}/checkout -d '{{"tier": "pro", "email": "you@example.com"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])')
  curl -sL -d card=4242424242424242 "$URL"   # "pay" (POST): Checkout redirects to the portal's welcome page, which shows your key once
  # or, in a browser: http://127.0.0.1:{stack.ports.portal}/ → Subscribe
  SUB=$(curl -s {stack.standin_url}/_standin/events | python3 -c 'import json,sys; print([e for e in json.load(sys.stdin)["data"] if e["type"].startswith("customer.subscription")][-1]["data"]["object"]["id"])')
  {trig} invoice.payment_failed --subscription $SUB   # past_due: still 200, with a warning
  {trig} customer.subscription.updated --subscription $SUB --status unpaid   # 402
  {trig} invoice.paid --subscription $SUB             # 200 again
  {trig} customer.subscription.deleted --subscription $SUB   # 401 key_revoked

Usage is drained to Stripe Billing Meter Events every few seconds (10 s windows here):
  {tollway} usage show --customer cus_demo --redis-url {stack.effective_redis_url}
  curl -s {stack.standin_url}/_standin/meter_events   # what the stand-in has accepted
  {tollway} reconcile --customer cus_demo --since 2020-01-01 --redis-url {stack.effective_redis_url} --stripe-api-base {stack.standin_url}
"""


def run(args: argparse.Namespace) -> int:
    try:
        settings, own_redis = settings_from(args, dict(os.environ))
        table = load_tiers(settings.tiers)
    except (SettingsError, TierError) as exc:
        print(f"tollway dev: {exc}", file=sys.stderr)
        return 2
    tier = table.get(DEMO_TIER) or next(iter(table))
    ports = Ports(
        envoy=settings.envoy_port,
        envoy_admin=settings.envoy_admin_port,
        authz=settings.authz_port,
        authz_metrics=settings.authz_metrics_port,
        upstream=settings.upstream_port,
        redis=settings.redis_port,
        webhook=settings.webhook_port,
        standin=settings.standin_port,
        metering=settings.metering_port,
        receiver=settings.receiver_port,
        receiver_metrics=settings.receiver_metrics_port,
        portal=settings.portal_port,
        api=settings.api_port,
        api_verify=settings.api_verify_port,
        smtp=settings.smtp_port,
    )
    environ = dict(os.environ)
    use_standin = not (environ.get("STRIPE_API_KEY") or environ.get("TOLLWAY_STRIPE_API_BASE"))
    stack = Stack(
        ports=ports,
        tiers=settings.tiers.resolve(),
        state_dir=settings.state_dir,
        sink=_sink,
        redis_url=None if own_redis else settings.redis_url,
        standin=use_standin,
        authz_mode=settings.authz_mode,
        portal=True,
        api=True,
        portal_secret=environ.get("TOLLWAY_PORTAL_SECRET") or f"dev-{os.urandom(16).hex()}",
        # Short windows and drains, so the demo shows usage reaching Stripe within seconds.
        env={
            "TOLLWAY_USAGE_WINDOW_S": environ.get("TOLLWAY_USAGE_WINDOW_S", "10"),
            "TOLLWAY_METERING_INTERVAL": environ.get("TOLLWAY_METERING_INTERVAL", "5"),
            "TOLLWAY_METERING_LOG_GRACE_S": environ.get("TOLLWAY_METERING_LOG_GRACE_S", "5"),
        },
        webhook_secret=environ.get("STRIPE_WEBHOOK_SECRET") or f"whsec_dev_{os.urandom(12).hex()}",
    )
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start_all()
        key, key_id, token = asyncio.run(_demo_key(stack, tier, KeyHasher.configured(settings)))
        if stack.standin:
            asyncio.run(seed_prices(stack.standin_url, table))
        print(banner(stack, tier, key, key_id) + api_banner(stack, token), flush=True)
        while not stopping.wait(0.2):
            dead = [p for p in stack.procs.values() if p.popen.poll() is not None]
            if dead:
                print(
                    f"tollway dev: {dead[0].name} exited ({dead[0].popen.returncode})",
                    file=sys.stderr,
                )
                return 1
        return 0
    except (MissingBinary, RuntimeError, TimeoutError, OSError) as exc:
        print(f"tollway dev: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop_all()
        print("tollway dev: stopped", file=sys.stderr)
