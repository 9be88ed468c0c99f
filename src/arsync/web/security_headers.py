"""Security headers on every response the server sends (OWASP Secure Headers Project).

Pages load scripts and styles from this server only; inline ``style`` attributes are allowed
(the UI's bars and chart legends use them), inline scripts are not. The API documentation
pages (Swagger UI and ReDoc, served from this server's own copies) start with an inline
script, so they alone allow one; ReDoc also runs a worker from a blob. No page may be framed.

Forms post to this server only, but some of its answers redirect elsewhere: Connect Xero answers
with Xero's authorize page. Chromium applies ``form-action`` to the redirects that follow a
form's submission too (Firefox does not; w3c/webappsec-csp issue #8, hexpm/hexpm PR #1413), so
those origins (``redirect_origins``) are allowed as form targets as well.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def page_policy(redirect_origins: tuple[str, ...] = ()) -> str:
    form_targets = " ".join(("'self'", *redirect_origins))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        f"connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action {form_targets}; object-src 'none'"
    )


DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'self'; object-src 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")


class SecurityHeaders:
    def __init__(self, app: ASGIApp, redirect_origins: tuple[str, ...] = ()) -> None:
        self.app = app
        self.page_policy = page_policy(redirect_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = DOCS_POLICY if scope["path"].startswith(DOCS_PATHS) else self.page_policy
        added = [
            (b"content-security-policy", policy.encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
        ]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in added if h[0] not in present]
            await send(message)

        await self.app(scope, receive, with_headers)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
