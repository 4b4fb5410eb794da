"""The HTTP ceiling: authz's own HTTP front (authz/http_front.py, uvloop + httptools) with a
handler that answers 200 and does nothing else. What HTTP ext_authz mode costs per check on
this machine before any of the check's work; authz in HTTP mode is measured against it.

    python bench/http_ceiling.py --port N
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authz.decision import Decision
from authz.http_check import CheckApp
from authz.http_front import HttpFront

OK = Decision(None)


def empty(_headers: Mapping[str, str]) -> Decision:
    """Answered at once, as authz answers what needs no Redis (no task)."""
    return OK


async def serve(port: int) -> None:
    await HttpFront(CheckApp(empty)).start("127.0.0.1", port)
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    uvloop.run(serve(p.parse_args().port))
