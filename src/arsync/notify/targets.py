"""What a webhook URL may be."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from arsync.errors import InvalidInput
from arsync.schemas import BASE_URL_PATTERN

# A base URL as arsync calls one (schemas.BASE_URL_PATTERN), then an optional query string:
# some receivers carry their token there.
WEBHOOK_URL_PATTERN = BASE_URL_PATTERN.removesuffix("$") + r"(?:\?[A-Za-z0-9._~%!$&'()*+,;=:@/?-]*)?$"


def validate_webhook_url(url: str) -> str:
    """An absolute http(s) URL with a host, a path and query at most: no credentials, no fragment."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput("the URL must be an absolute http:// or https:// URL", details={"field": "url"})
    if "@" in parts.netloc or parts.fragment:
        raise InvalidInput("the URL must not contain credentials or a #fragment", details={"field": "url"})
    if not re.fullmatch(WEBHOOK_URL_PATTERN, url):
        raise InvalidInput(
            "the URL must be http(s)://, a host name or a dotted-quad address, then an optional port, path and query",
            details={"field": "url"},
        )
    return url
