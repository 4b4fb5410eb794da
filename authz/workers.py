"""``--workers N``: run N worker processes on one port and pass signals on to them.

Each worker is ``python -m authz --worker-index I`` with the same settings; the gRPC port is
shared through SO_REUSEPORT and each worker serves metrics on metrics_port + I. A worker that
dies unexpectedly is restarted (at most once a second); SIGTERM/SIGINT stop them all, SIGHUP is
forwarded so every worker reloads the tier table.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from types import FrameType

from tollway.logs import fields

log = logging.getLogger("tollway.authz")


def supervise(n: int, argv: list[str]) -> int:
    def spawn(i: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "authz", *argv, "--worker-index", str(i)])

    procs = [spawn(i) for i in range(n)]
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)

    last_restart = [0.0] * n
    while True:
        alive = False
        for i, p in enumerate(procs):
            code = p.poll()
            if code is None:
                alive = True
            elif not stopping and time.monotonic() - last_restart[i] > 1.0:
                log.error("worker_died", extra=fields(worker=i, exit_code=code))
                last_restart[i] = time.monotonic()
                procs[i] = spawn(i)
                alive = True
        if stopping and not alive:
            return 0
        time.sleep(0.1)
