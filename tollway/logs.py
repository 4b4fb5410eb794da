"""Structured JSON logs, one object per line on stderr.

Call ``log.info("event_name", extra=fields(key_id=..., reason=...))``. Never pass a plaintext
key: log the key id.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


def fields(**kw: Any) -> dict[str, Any]:
    return {"fields": kw}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "event": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # stripe-python logs every request at INFO; our own events say what matters.
    logging.getLogger("stripe").setLevel(max(logging.WARNING, root.level))
