"""Log lines: plain text by default, one JSON object per line with ``ARSYNC_LOG_FORMAT=json``.

Every line goes through the standard library's ``logging`` (arsync's modules, uvicorn and
Procrastinate log there) and is rendered by structlog's ``ProcessorFormatter``, which adds what
is bound for the work in hand: ``request_id`` for an HTTP request (see :class:`RequestIds`),
``run_id`` for a sync run, ``push_id`` for a push, ``notification_id`` for a notification.
Values under a name that says it holds a secret are replaced before anything is written.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import IO, Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECRET_NAMES = re.compile(r"secret|password|token|api_?key|authorization|cookie", re.IGNORECASE)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
access_log = logging.getLogger("arsync.access")


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in event:
        if SECRET_NAMES.search(key):
            event[key] = "[redacted]"
    return event


def configure(*, json: bool, level: str = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) in the chosen format; returns the handler."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False, sort_keys=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "arsync", False):
            root.removeHandler(existing)
    handler.arsync = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


@contextmanager
def bound(**ids: str) -> Iterator[None]:
    """Put ``ids`` on every line logged in this block (this thread or task)."""
    with structlog.contextvars.bound_contextvars(**ids):
        yield


class RequestIds:
    """Gives each HTTP request an id: the caller's ``X-Request-ID`` if it is a plain token,
    else a new one. It is on every line logged for the request and on the response, and one
    access line per request records method, path (never the query), status and duration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        started = time.perf_counter()
        status = 500

        async def with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        with bound(request_id=request_id):
            try:
                await self.app(scope, receive, with_id)
            finally:
                access_log.info(
                    "%s %s %d", scope["method"], scope["path"], status,
                    extra={"duration_ms": round((time.perf_counter() - started) * 1000, 1)},
                )  # fmt: skip
