"""Sending mail: the standard library's SMTP client, in a thread (a sign-in link is one
message now and then; an asynchronous SMTP package would add a dependency for nothing)."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

TIMEOUT_S = 10.0


class Mailer:
    def __init__(self, host: str, port: int, sender: str) -> None:
        self.host, self.port, self.sender = host, port, sender

    async def send(self, to: str, subject: str, body: str) -> None:
        """Send one plain-text message; raises OSError or smtplib.SMTPException on failure."""
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, to, subject
        msg.set_content(body)
        await asyncio.to_thread(self._send, msg)

    def _send(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_S) as smtp:
            smtp.send_message(msg)
