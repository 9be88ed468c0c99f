"""Request limits enforced before any route, dependency or parser sees the request.

A body larger than its limit is refused with 413 in the standard error shape: at once when its
Content-Length says so (before authentication, so an anonymous client cannot make the server
read it), and while it streams otherwise, so no more than the limit is ever held in memory. A
query string carrying a NUL character is refused with 422: PostgreSQL cannot compare text with
one.

Written as plain ASGI because Starlette has no body limit of its own, and a limit checked in a
route would come after FastAPI has already read and parsed the body.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE = "PAYLOAD_TOO_LARGE"


def _error_body(code: str, message: str, details: dict[str, object] | None = None) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "details": details}})


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def too_large_message(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"


class RequestLimits:
    """``limits``: (path prefix, bytes) pairs, the first matching prefix wins; else ``default``."""

    def __init__(self, app: ASGIApp, *, default: int, limits: tuple[tuple[str, int], ...] = ()) -> None:
        self.app = app
        self.default = default
        self.limits = limits

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.limits if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nul = next(
            (name for name, value in parse_qsl(scope["query_string"].decode("latin-1")) if "\x00" in value), None
        )
        if nul is not None:
            message = f"{nul}: contains a NUL character"
            await _answer(send, 422, _error_body("VALIDATION_FAILED", message, {"fieldErrors": [
                {"field": nul, "message": "contains a NUL character"}]}))  # fmt: skip
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _answer(send, 413, _error_body(TOO_LARGE, too_large_message(limit), {"limitBytes": limit}))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route's body read; FastAPI passes HTTPException through
                    # and the error handlers give it the standard shape.
                    raise HTTPException(413, too_large_message(limit))
            return message

        await self.app(scope, counted, send)
