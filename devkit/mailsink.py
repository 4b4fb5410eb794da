"""A local SMTP sink for `tollway dev`: it accepts every message and prints it, links first.

``python -m devkit.mailsink --port 2525``. Nothing is delivered anywhere; the portal's
sign-in links show up in the dev stack's output.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from email import message_from_bytes
from typing import Any

from aiosmtpd.controller import Controller

LINK = re.compile(r"https?://\S+")


class Printer:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content)
        payload = msg.get_payload(decode=True)
        body = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        print(f"mail to {', '.join(envelope.rcpt_tos)}: {msg.get('Subject', '')}", flush=True)
        for link in LINK.findall(body):
            print(f"  link: {link}", flush=True)
        return "250 OK"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tollway-mailsink", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2525)
    args = p.parse_args(argv)
    controller = Controller(Printer(), hostname=args.host, port=args.port)
    controller.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"SMTP sink on {args.host}:{args.port}", flush=True)
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
