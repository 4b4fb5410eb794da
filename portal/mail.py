"""Sending mail: the standard library's SMTP client, in a thread (a sign-in link is one
message now and then; an asynchronous SMTP package would add a dependency for nothing).

``send_later`` sends in the background: a page that mails a link answers at once whether or
not it mailed anything, so its response time does not tell a stranger who is a customer."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage

from tollway.background import Background

log = logging.getLogger("tollway.portal")
TIMEOUT_S = 10.0


class Mailer:
    def __init__(self, host: str, port: int, sender: str) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.sending = Background(log)

    def send_later(self, to: str, subject: str, body: str, what: str) -> None:
        """Send in the background; a failure is logged as ``<what>_mail_failed``, never shown."""
        self.sending.run(self.send(to, subject, body), f"{what}_mail")

    async def send(self, to: str, subject: str, body: str) -> None:
        """Send one plain-text message; raises OSError or smtplib.SMTPException on failure."""
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, to, subject
        msg.set_content(body)
        await asyncio.to_thread(self._send, msg)

    def _send(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_S) as smtp:
            smtp.send_message(msg)
