"""Which address a request came from, behind a known number of proxies. No I/O.

Behind an ingress gateway or a load balancer, the peer of every request is the proxy, so a
limit per peer address becomes one limit for everybody. Each proxy appends the address it
received the request from to X-Forwarded-For; with ``trusted_hops`` proxies in front, the
client is the ``trusted_hops``-th address from the right. Anything to the left of it was sent
by the client and is not believed. With 0 trusted hops, X-Forwarded-For is ignored.
"""

from __future__ import annotations

import ipaddress


def client_address(peer: str | None, forwarded_for: str | None, trusted_hops: int) -> str:
    """The client's address: from X-Forwarded-For at ``trusted_hops``, else the peer's ("?"
    if there is none). A header with fewer hops than trusted, or a value that is not an IP
    address, falls back to the peer: what a misconfigured chain cannot prove is not used."""
    fallback = peer or "?"
    if trusted_hops <= 0 or not forwarded_for:
        return fallback
    hops = [h.strip() for h in forwarded_for[:2048].split(",")]
    if len(hops) < trusted_hops:
        return fallback
    candidate = hops[-trusted_hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return fallback
