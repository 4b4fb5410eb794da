"""Every operation of the management API, in the order the document lists them."""

from __future__ import annotations

from api import accounts, credits, keys, reads, verify
from api.operations import Operation

OPERATIONS: list[Operation] = [
    *verify.OPERATIONS,
    *keys.OPERATIONS,
    *accounts.OPERATIONS,
    *credits.OPERATIONS,
    *reads.OPERATIONS,
]
