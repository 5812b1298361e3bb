"""Sending email through the operator's SMTP server ([smtp]), with the standard library.

smtplib blocks, so each message is sent from a worker thread. Nothing here logs the
password; a failure is logged with the server's reply, never with the message body (it may
carry a reset link).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from server.config import SmtpConfig


class MailError(RuntimeError):
    """The message could not be handed to the mail server; the reason, without secrets."""


@dataclass(frozen=True)
class Mail:
    """One plain-text message to one person."""

    to: str
    subject: str
    text: str


class Mailer:
    """The node's way to send mail; `enabled` is false when no server is configured."""

    def __init__(self, config: SmtpConfig, domain: str) -> None:
        self.config = config
        host = domain.rsplit(":", 1)[0] if domain.count(":") == 1 else domain
        self.sender = config.from_address.strip() or f"notifications@{host}"
        self.sender_domain = host

    @property
    def enabled(self) -> bool:
        return bool(self.config.host.strip())

    async def send(self, mail: Mail) -> None:
        """Hand the message to the mail server; MailError if it cannot be."""
        if not self.enabled:
            raise MailError("no mail server is configured ([smtp] host)")
        message = self._message(mail)
        try:
            await asyncio.to_thread(self._deliver, message)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"{self.config.host}:{self.config.port}: {_reason(exc)}") from None

    def _message(self, mail: Mail) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=self.sender_domain)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(mail.text)
        return message

    def _deliver(self, message: EmailMessage) -> None:
        config = self.config
        timeout = config.timeout_seconds
        context = ssl.create_default_context()
        if config.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                config.host, config.port, timeout=timeout, context=context
            )
        else:
            client = smtplib.SMTP(config.host, config.port, timeout=timeout)
        with client:
            client.ehlo()
            if config.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if config.username:
                client.login(config.username, config.password)
            client.send_message(message)


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line; SMTP replies are the server's words, never our secrets."""
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if exc.smtp_error else ""
        return f"{exc.smtp_code} {text}".strip()
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "the recipient was refused"
    return str(exc) or type(exc).__name__
