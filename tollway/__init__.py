"""tollway's shared kernel: what authz, webhook and metering all import (settings, tiers,
keys, records, the Redis schema and its Lua scripts, the key store, clients, the process runner).
It imports no service, nor the command line or the dev kit (tests/unit/test_imports.py)."""

__version__ = "0.1.0"
