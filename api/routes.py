"""Every operation of the management API, in the order the document lists them."""

from __future__ import annotations

from api import accounts, keys, reads, verify
from api.operations import Operation

OPERATIONS: list[Operation] = [
    *verify.OPERATIONS,
    *keys.OPERATIONS,
    *accounts.OPERATIONS,
    *reads.OPERATIONS,
]
