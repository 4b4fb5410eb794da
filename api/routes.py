"""Every operation of the management API, in the order the document lists them."""

from __future__ import annotations

from api import accounts, keys, reads
from api.operations import Operation

OPERATIONS: list[Operation] = [*keys.OPERATIONS, *accounts.OPERATIONS, *reads.OPERATIONS]
