"""Which network addresses arsync calls on a tenant's behalf.

Tenants choose the URLs of their ERP middleware, of the Developer Sandbox's target and of
Nomod, and the server then calls them: without a rule, a tenant could make arsync read a
cloud metadata service (169.254.169.254) or reach hosts it was never meant to. Link-local,
unspecified and multicast addresses are always refused. Every other address that is not
globally reachable (loopback, private, shared, reserved, documentation) is refused too, unless
``ARSYNC_OUTBOUND_ALLOW_PRIVATE=true``: a single-tenant install whose middleware runs on its own
private network turns it on. An IPv6 address that carries an IPv4 one (IPv4-mapped,
IPv4-compatible, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4) is judged by that IPv4 address.

The rule is an :class:`OutboundPolicy`, one per container (``bootstrap`` builds it from
settings), handed to every client that calls a tenant's URL. arsync's own loopback servers (the
demo's mocks, the Sandbox's built-in mock ERP) are called through :meth:`OutboundPolicy.trusted`,
which admits exactly their origin while they run.

The address is checked when a URL is saved and again before every request. The HTTP client
resolves the name once more to connect, so a name that changes its answer in between (DNS
rebinding) is not stopped; refusing private addresses at a network firewall is the complete
answer for a shared deployment.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from arsync.errors import InvalidInput, OutboundRefused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


@dataclass
class OutboundPolicy:
    """Whether private addresses may be called, and which of arsync's own origins are admitted."""

    allow_private: bool = False
    _trusted: set[tuple[str, int | None]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def private_addresses(self, *, allowed: bool) -> Iterator[None]:
        """The rule changed for a block, then restored (tests)."""
        before = self.allow_private
        self.allow_private = allowed
        try:
            yield
        finally:
            self.allow_private = before

    @contextmanager
    def trusted(self, url: str) -> Iterator[None]:
        """Admit calls to ``url``'s origin (scheme-less host and port) for a block: arsync's own servers."""
        parts = urlsplit(url)
        origin = ((parts.hostname or "").lower(), parts.port)
        with self._lock:
            self._trusted.add(origin)
        try:
            yield
        finally:
            with self._lock:
                self._trusted.discard(origin)

    def _is_trusted(self, host: str, port: int | None) -> bool:
        return (host.lower().strip("[]"), port) in self._trusted

    def problem_with(self, host: str) -> str | None:
        """Why ``host`` may not be called (any of its addresses refused), or None."""
        for address in _addresses(host):
            reason = refusal(address, allow_private=self.allow_private)
            if reason:
                named = host if host.strip("[]") == str(address) else f"{host} ({address})"
                return f"{named}: {reason}"
        return None

    def check_url(self, url: str, field: str) -> None:
        """Refuse a URL a tenant is saving if its host may not be called; ``field`` names it."""
        parts = urlsplit(url)
        host = parts.hostname
        reason = self.problem_with(host) if host and not self._is_trusted(host, parts.port) else None
        if reason:
            raise InvalidInput(f"arsync does not call {reason}", details={"field": field})

    def guard_request(self, request: httpx.Request) -> None:
        """httpx request hook: refuse the call before it is sent."""
        if self._is_trusted(request.url.host, request.url.port):
            return
        reason = self.problem_with(request.url.host)
        if reason:
            raise OutboundRefused(f"arsync does not call {reason}", endpoint=request.url.path)

    @property
    def event_hooks(self) -> dict[str, list[Callable[[httpx.Request], None]]]:
        """For ``httpx.Client(event_hooks=...)``: every request is checked before it is sent."""
        return {"request": [self.guard_request]}


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, NAT64 or 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _NAT64) or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: Address, *, allow_private: bool) -> str | None:
    """Why ``address`` may not be called, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = embedded_ipv4(address)
        if carried is not None:
            return refusal(carried, allow_private=allow_private)
    if address.is_link_local or address.is_unspecified or address.is_multicast:
        return "a link-local, unspecified or multicast address (such as a cloud metadata service)"
    if not allow_private and not address.is_global:  # loopback, private, shared (CGNAT), reserved
        return "a loopback or private address, and ARSYNC_OUTBOUND_ALLOW_PRIVATE is off (the default)"
    return None


def _addresses(host: str) -> list[Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []  # does not resolve: the call itself will fail and say so
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def validate_base_url(url: str, field: str = "baseUrl") -> str:
    """A base URL arsync will call (ERP middleware, Nomod, a Sandbox target), or a clear error:
    http(s), a host, no trailing slash, no query, fragment or credentials, and a numeric host
    only as a plain address (``0177.0.0.1`` means 127.0.0.1 to some resolvers)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        raise InvalidInput(f"base URL {url!r} is not a valid URL: {exc}", details={"field": field}) from None
    if _NUMERIC_HOST.match(host) and not _is_plain_ipv4(host):
        raise InvalidInput(
            f"base URL host {host!r} must be written as four decimal numbers, e.g. 127.0.0.1",
            details={"field": field},
        )
    try:
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise InvalidInput(f"base URL {url!r} is not a valid URL: {exc}", details={"field": field}) from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidInput(
            f"base URL {url!r} must be an absolute http:// or https:// URL, e.g. https://erp.example.com/nudge",
            details={"field": field},
        )
    if url.endswith("/"):
        raise InvalidInput(f"base URL must not end with a slash: use {url.rstrip('/')!r}", details={"field": field})
    if parts.query or parts.fragment:
        raise InvalidInput("base URL must not contain a query string or fragment", details={"field": field})
    if parts.username or parts.password:
        raise InvalidInput(
            "base URL must not contain credentials; arsync sends its own key as a Bearer token",
            details={"field": field},
        )
    return url


_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9.]+)$", re.IGNORECASE)


def _is_plain_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True
