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

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arsync.web.errors import HTTP_CODES, error_json

# The standard error shape, answered before the app runs; the connection is closed so a body
# still streaming in is not read.
CLOSE = {"Connection": "close"}


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
            problem = "contains a NUL character"
            fields = {"fieldErrors": [{"field": nul, "message": problem}]}
            refusal = error_json(422, "VALIDATION_FAILED", f"{nul}: {problem}", fields, CLOSE)
            await refusal(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            too_large = error_json(413, HTTP_CODES[413], too_large_message(limit), {"limitBytes": limit}, CLOSE)
            await too_large(scope, receive, send)
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
