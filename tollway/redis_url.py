"""The one reader of a tollway Redis URL; both Redis clients are built from what it returns.

    redis://[user:pass@]host[:port][/db]      one Redis (rediss:// for TLS)
    unix://[user:pass@]/path/to/socket[?db=N]  one Redis over a Unix socket
    redis+cluster://[user:pass@]host[:port][,host[:port]...]   a Redis Cluster, reached
                                              through any of the nodes named (the seeds)

redis-py's own URL reader (``from_url``) takes only one host and many query options the lean
check-path client ignores, so neither client reads the URL itself: a URL either works for
every process of tollway or is refused, with this module's message, when settings load.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

CLUSTER_SCHEME = "redis+cluster://"  # a Redis Cluster, reached through any of its nodes
SCHEMES = ("redis://", "rediss://", "unix://", CLUSTER_SCHEME)
DEFAULT_PORT = 6379


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is and how to sign in: a Unix ``path``, or ``seeds`` (one for a single
    Redis, one or more for a cluster)."""

    seeds: tuple[tuple[str, int], ...] = ()
    path: str = ""
    cluster: bool = False
    tls: bool = False
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse(url: str) -> RedisTarget:
    """``url`` read; raises ValueError naming what is wrong with it (never echoing a
    password)."""
    if not url.startswith(SCHEMES):
        raise ValueError(f"expected a URL starting with one of {', '.join(SCHEMES)}")
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    query = parse_qs(parts.query, keep_blank_values=True)
    if parts.scheme == "unix":
        if set(query) - {"db"} or not parts.path:
            raise ValueError("a unix:// URL takes a socket path and at most ?db=N")
        db = _db(query.get("db", ["0"])[-1])
        return RedisTarget(path=parts.path, db=db, username=user, password=password)
    if query:
        raise ValueError(f"unexpected query options in the URL: {', '.join(sorted(query))}")
    cluster = url.startswith(CLUSTER_SCHEME)
    if cluster and parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0")
    seeds = tuple(_hostport(h) for h in hosts.split(","))
    if not cluster and len(seeds) > 1:
        raise ValueError("several hosts name a cluster: use redis+cluster://")
    db = 0 if cluster else _db(parts.path.strip("/") or "0")
    tls = parts.scheme == "rediss"
    return RedisTarget(seeds, "", cluster, tls, db, user, password)


def _hostport(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or text.endswith("]"):
        host, port = text, ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # an IPv6 literal
    if not port:
        return host or "127.0.0.1", DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a port: {port[:20]!r}")
    return host or "127.0.0.1", int(port)


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"not a database number: {text[:20]!r}")
    return int(text)
