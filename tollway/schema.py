"""Every Redis key name tollway uses, built here and nowhere else.

All of one API key's state shares the hash tag ``{<key_id>}``, so the check script's keys land
in one Redis Cluster slot:

    tw:{<key_id>}:key     hash   the key record (tollway.records.KeyRecord)
    tw:{<key_id>}:state   hash   token bucket (tokens, ts_ms) and quota (q_period, q_used)
    tw:{<key_id>}:usage   hash   window start (epoch s) -> requests let through; metering drains it
"""

from __future__ import annotations

PREFIX = "tw"


def _tag(key_id: str) -> str:
    return f"{PREFIX}:{{{key_id}}}"


def key_record(key_id: str) -> str:
    return f"{_tag(key_id)}:key"


def key_state(key_id: str) -> str:
    return f"{_tag(key_id)}:state"


def key_usage(key_id: str) -> str:
    return f"{_tag(key_id)}:usage"


def check_keys(key_id: str) -> list[str]:
    """KEYS for the check script, in the order check.lua reads them."""
    return [key_record(key_id), key_state(key_id), key_usage(key_id)]


def record_pattern() -> str:
    """SCAN pattern matching every key record."""
    return f"{PREFIX}:{{*}}:key"
