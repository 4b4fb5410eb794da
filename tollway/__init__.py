"""tollway's shared kernel: what authz, webhook, metering and the portal import (settings, the
tier table, keys, accounts and their one lifecycle, the Redis schema and its Lua scripts, the
error tree, clients, the process runner). It imports no service, nor the command line or the
dev kit (tests/unit/test_imports.py)."""

__version__ = "0.1.0"
