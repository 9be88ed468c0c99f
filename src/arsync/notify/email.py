"""Notification email through the SMTP server in settings (``ARSYNC_SMTP_*``)."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import orjson

from arsync.notify.events import EVENTS, TEST_EVENT


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    timeout_seconds: float = 15.0


def compose(sender: str, to: str, message_id: str, payload: dict[str, Any]) -> EmailMessage:
    """One notification as an email: the event's meaning as the subject line, the payload below.
    The Message-ID is the delivery's id, so a mail client shows a resent attempt as the same mail."""
    event = payload["type"]
    meaning = EVENTS.get(event) or ("A test notification from arsync." if event == TEST_EVENT else event)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"[arsync] {event}: {meaning}"
    message["Message-ID"] = f"<{message_id}@arsync>"
    message.set_content(
        f"{meaning}\n\nAt {payload['timestamp']}.\n\n"
        + orjson.dumps(payload["data"], option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        + "\n"
    )
    return message


def send(smtp: SmtpSettings, message: EmailMessage) -> None:
    """Hand the message to the SMTP server; any refusal raises (``smtplib.SMTPException`` or ``OSError``)."""
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds) as client:
        if smtp.starttls:
            client.starttls()
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
        client.send_message(message)
