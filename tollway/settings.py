"""Typed, frozen settings for each tollway service, read once from a ``TOLLWAY_*`` environment.

Every field names its environment variable in its metadata and has a default. ``load(cls, env)``
takes any ``Mapping[str, str]`` so tests pass a dict rather than patching ``os.environ``;
command-line flags are applied afterwards with ``dataclasses.replace``.

A field declared with ``secret=True`` refuses a value this repository publishes (an example,
a placeholder, a default it once shipped): anyone who reads the repo could forge what such a
secret signs. Its value is never echoed in the error.

Raises ``SettingsError`` (a ``ValueError``) naming the variable and the bad value.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tollway.errors import InvalidInput
from tollway.redis_url import CLUSTER_SCHEME
from tollway.redis_url import parse as parse_redis_url

T = TypeVar("T")

# The example tier table that ships inside the package, used when no path is configured.
DEFAULT_TIERS = Path(__file__).parent / "data" / "tiers.toml"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# In TOLLWAY_KEY_PEPPER's list, after the pepper in force: keys issued with no pepper at all.
UNPEPPERED = "unpeppered"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


# Secret values that are, or were, written in this repository (docker-compose.yml's old
# fallbacks, the dev stack's old fixed secrets): refused wherever a secret is read.
PUBLISHED_SECRETS = frozenset(
    {
        "compose-demo-pepper-change-me",
        "compose-demo-usage-log-change-me",
        "compose-demo-portal-secret-change-me",
        "whsec_tollway_compose",
        "whsec_tollway_dev",
        "tollway-dev-usage-log",
        "tollway-dev-portal-secret",
    }
)
# A placeholder (as the Istio manifests once had: "REPLACE_WITH_A_LONG_RANDOM_STRING", "change-me").
_PLACEHOLDER = re.compile(r"replace|change[-_ ]?me|example", re.IGNORECASE)


class SettingsError(InvalidInput):
    """An environment variable holds a value its setting cannot take."""


def env(
    name: str, default: Any, doc: str, secret: bool = False, choices: tuple[str, ...] = ()
) -> Any:
    """Declare a settings field read from environment variable ``name``; ``secret``: refuse
    a value the repository publishes (``published``); ``choices``: the values it may take
    (compared in upper case)."""
    meta = {"env": name, "doc": doc, "secret": secret, "choices": choices}
    return field(default=default, metadata=meta)


def redacted(url: str) -> str:
    """``url`` fit to print: a password in it (``redis://:pw@host``) becomes ``***``."""
    return re.sub(r"(://[^:/@,]*:)[^@/]*@", r"\1***@", url)


def listed(value: str) -> list[str]:
    """The comma-separated parts of a setting, stripped, empty ones dropped: the secrets a
    setting lists while one is rotated (the one to sign with first)."""
    return [p.strip() for p in value.split(",") if p.strip()]


def published(value: str) -> bool:
    """Whether ``value`` (or one of its comma-separated parts) is a secret anyone can read in
    this repository: one it ships or shipped, or a placeholder."""
    return any(p in PUBLISHED_SECRETS or _PLACEHOLDER.search(p) for p in listed(value))


def _convert(name: str, raw: str, kind: Any) -> Any:
    if kind is bool:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise SettingsError(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")
    if kind is int or kind is float:
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: expected {kind.__name__}") from None
        if value < 0:
            raise SettingsError(f"{name}={raw!r}: must not be negative")
        return value
    if kind is Path:
        return Path(raw)
    return raw


def load(cls: type[T], environ: Mapping[str, str]) -> T:
    """Build settings ``cls`` from ``environ``; unset variables keep the field's default."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f.metadata.get("env")
        if name is None or name not in environ:
            continue
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # "Path | None" and the like
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        values[f.name] = _convert(name, environ[name], kind)
        choices = f.metadata.get("choices")
        if choices and environ[name].upper() not in choices:
            raise SettingsError(f"{name}={environ[name]!r}: expected one of {', '.join(choices)}")
        if f.metadata.get("secret") and published(environ[name]):
            raise SettingsError(
                f"{name} is a value published in tollway's repository (an example, a "
                "placeholder or an old default): anyone could forge what it signs. Draw a "
                "fresh one, e.g. `openssl rand -hex 32`"
            )
    return cls(**values)


def describe(cls: type[Any]) -> list[tuple[str, str, str]]:
    """(variable, default, doc) rows for ``cls``: what the README's settings tables list."""
    return [
        (f.metadata["env"], repr(f.default), f.metadata["doc"])
        for f in dataclasses.fields(cls)
        if "env" in f.metadata
    ]


@dataclass(frozen=True)
class RedisSettings:
    """What every process needs to reach Redis and read the tier table."""

    redis_url: str = env("TOLLWAY_REDIS_URL", DEFAULT_REDIS_URL, "Redis to keep key state in")
    # A Redis Cluster is chosen by a redis+cluster://host:port URL (any node), or by this.
    redis_cluster: bool = env("TOLLWAY_REDIS_CLUSTER", False, "the Redis URL is a cluster node")
    tiers: Path = env("TOLLWAY_TIERS", DEFAULT_TIERS, "the tier table (TOML)")
    # DEBUG also prints a command's traceback when it fails on something unexpected.
    log_level: str = env(
        "TOLLWAY_LOG_LEVEL",
        "INFO",
        "log level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    )
    # HMAC pepper for key hashes. Empty means plain SHA-256; set it in production so a leaked
    # Redis dump cannot be checked against guessed keys offline. To rotate it, list the new one
    # first, then the earlier ones (UNPEPPERED for keys issued before any was set): keys are
    # moved to the first as they are presented (README "Secrets and their rotation").
    key_pepper: str = env(
        "TOLLWAY_KEY_PEPPER",
        "",
        "server secret(s) mixed into key hashes, in force first, comma-separated",
        secret=True,
    )
    # uvloop: more checks/s than asyncio's own loop (make bench compares their ceilings).
    event_loop: str = env("TOLLWAY_EVENT_LOOP", "uvloop", "uvloop, or asyncio")
    # The audit log's bounds (tollway/audit.py): each process that writes to it trims it to
    # these, so set them alike everywhere (the smallest wins).
    audit_max_entries: int = env(
        "TOLLWAY_AUDIT_MAX_ENTRIES", 100_000, "the audit log keeps at most this many entries"
    )
    audit_max_age_days: float = env("TOLLWAY_AUDIT_MAX_AGE_DAYS", 90.0, "and none older than this")

    def __post_init__(self) -> None:
        peppers = listed(self.key_pepper)
        if peppers[:1] == [UNPEPPERED]:
            raise SettingsError(
                f"TOLLWAY_KEY_PEPPER: {UNPEPPERED} may only follow the pepper in force (it "
                "names the keys issued before any pepper was set)"
            )
        if len(set(peppers)) != len(peppers):
            raise SettingsError("TOLLWAY_KEY_PEPPER lists one pepper twice")
        url = self.redis_url
        try:
            parse_redis_url(url)
        except ValueError as exc:
            raise SettingsError(f"TOLLWAY_REDIS_URL={redacted(url)!r}: {exc}") from None
        if self.redis_cluster and url.startswith("redis://"):
            # Frozen: the one place a field is rewritten, so every service connects the same way.
            object.__setattr__(self, "redis_url", CLUSTER_SCHEME + url.removeprefix("redis://"))

    @property
    def key_peppers(self) -> tuple[bytes, ...]:
        """The key peppers listed, the one in force first (b"" for UNPEPPERED); () for none."""
        return tuple(b"" if p == UNPEPPERED else p.encode() for p in listed(self.key_pepper))


@dataclass(frozen=True)
class StripeSettings:
    """How to reach Stripe: the real API, or the local stand-in when api_base is set."""

    stripe_api_key: str = env("STRIPE_API_KEY", "", "Stripe secret key (sk_...)")
    # Where the stripe SDK is pointed: the stand-in's URL in tests and `make run`.
    stripe_api_base: str = env("TOLLWAY_STRIPE_API_BASE", "", "Stripe API base URL override")
    # One or more secrets, comma-separated, so a secret can be rotated without dropping events.
    webhook_secrets: str = env(
        "STRIPE_WEBHOOK_SECRET", "", "webhook signing secret(s), comma-separated", secret=True
    )

    @property
    def secrets(self) -> list[str]:
        return listed(self.webhook_secrets)


@dataclass(frozen=True)
class UsageLogSettings:
    """Billing what was served: the secret authz signs usage stamps with and metering's
    access-log receiver checks them with (tollway/usage_stamp.py). Empty: authz stamps nothing
    and usage stays as counted at check time."""

    usage_log_secret: str = env(
        "TOLLWAY_USAGE_LOG_SECRET", "", "shared by authz and the access-log receiver", secret=True
    )


@dataclass(frozen=True)
class UsageWindowSettings:
    """The usage counter window: authz counts each request in one, metering sends a window once
    it has closed, and the access-log receiver refunds into the window a request was counted
    in. Declared once, so the three read one variable."""

    usage_window_s: int = env("TOLLWAY_USAGE_WINDOW_S", 60, "usage counter window in seconds")


@dataclass(frozen=True)
class ProxySettings:
    """Where a request came from, for limits per client (tollway/client_address.py)."""

    # The proxies in front of this service that append to X-Forwarded-For (an ingress gateway:
    # 1; a cloud load balancer in front of it: 2). 0: the peer is the client, and a client's
    # own X-Forwarded-For is ignored. Too high lets a client choose its address; too low makes
    # every client one (the proxy).
    trusted_hops: int = env("TOLLWAY_TRUSTED_HOPS", 0, "proxies in front that set X-Forwarded-For")


@dataclass(frozen=True)
class BackendSettings:
    """The webhook service's /checkout and /keys/claim: for the portal and the operator's own
    backend, not the open internet (webhook/gate.py)."""

    # Shared by the portal and the webhook service. Set: those two paths answer only a caller
    # that sends it (Authorization: Bearer ...), and that caller throttles its own clients.
    # Empty: they are open, throttled per client address (direct claims after Checkout).
    backend_token: str = env(
        "TOLLWAY_BACKEND_TOKEN", "", "required on /checkout and /keys/claim when set", secret=True
    )


@dataclass(frozen=True)
class TlsSettings:
    """TLS on the port Envoy calls (authz's checks, the access-log receiver's stream), for a
    network without a mesh to encrypt it (tollway/tls.py). A certificate and its key turn it
    on; a client CA also requires Envoy to present a certificate it signed (mutual TLS). A
    service that has these calls ``check_tls`` from its ``__post_init__``."""

    tls_cert: str = env("TOLLWAY_TLS_CERT", "", "PEM certificate chain served to Envoy (TLS on)")
    tls_key: str = env("TOLLWAY_TLS_KEY", "", "its PEM private key")
    tls_client_ca: str = env(
        "TOLLWAY_TLS_CLIENT_CA", "", "PEM CA bundle: only clients it signed are served (mTLS)"
    )

    def check_tls(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("TOLLWAY_TLS_CERT and TOLLWAY_TLS_KEY go together: set both")
        if self.tls_client_ca and not self.tls_cert:
            raise SettingsError(
                "TOLLWAY_TLS_CLIENT_CA asks for client certificates over TLS: set "
                "TOLLWAY_TLS_CERT and TOLLWAY_TLS_KEY too"
            )
        for name, path in (
            ("TOLLWAY_TLS_CERT", self.tls_cert),
            ("TOLLWAY_TLS_KEY", self.tls_key),
            ("TOLLWAY_TLS_CLIENT_CA", self.tls_client_ca),
        ):
            if path and not os.access(path, os.R_OK):
                raise SettingsError(f"{name}={path!r}: no such readable file")


def with_flags(cls: type[T], environ: Mapping[str, str], flags: Mapping[str, Any]) -> T:
    """Settings from ``environ``, then every flag that was given (not None) on top."""
    return dataclasses.replace(
        load(cls, environ), **{k: v for k, v in flags.items() if v is not None}
    )  # type: ignore[type-var]
