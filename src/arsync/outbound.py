"""Which network addresses arsync calls on a tenant's behalf.

Tenants choose the URLs of their ERP middleware, of the Developer Sandbox's target and of
Nomod, and the server then calls them: without a rule, a tenant could make arsync read a
cloud metadata service (169.254.169.254) or reach hosts it was never meant to. Link-local,
unspecified and multicast addresses are always refused. Loopback and private networks are
allowed unless ``ARSYNC_OUTBOUND_ALLOW_PRIVATE=false`` (middleware often runs next to the ERP on
a private network, and the mocks run on loopback).

The address is checked when a URL is saved and again before every request. The HTTP client
resolves the name once more to connect, so a name that changes its answer in between (DNS
rebinding) is not stopped; refusing private addresses at a network firewall is the complete
answer for a shared deployment.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx

from arsync.errors import InvalidInput, OutboundRefused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_allow_private = True


def configure(*, allow_private: bool) -> None:
    """Set the rule for this process (``bootstrap`` does, from settings)."""
    global _allow_private
    _allow_private = allow_private


@contextmanager
def private_addresses(*, allowed: bool) -> Iterator[None]:
    """The rule changed for a block, then restored (tests)."""
    before = _allow_private
    configure(allow_private=allowed)
    try:
        yield
    finally:
        configure(allow_private=before)


def refusal(address: Address) -> str | None:
    """Why ``address`` may not be called, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_link_local or address.is_unspecified or address.is_multicast:
        return "a link-local, unspecified or multicast address (such as a cloud metadata service)"
    if not _allow_private and not address.is_global:  # loopback, private, shared (CGNAT), reserved
        return "a loopback or private address, and ARSYNC_OUTBOUND_ALLOW_PRIVATE is off"
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


def problem_with(host: str) -> str | None:
    """Why ``host`` may not be called (any of its addresses refused), or None."""
    for address in _addresses(host):
        reason = refusal(address)
        if reason:
            named = host if host.strip("[]") == str(address) else f"{host} ({address})"
            return f"{named}: {reason}"
    return None


def check_url(url: str, field: str) -> None:
    """Refuse a URL a tenant is saving if its host may not be called; ``field`` names it."""
    host = urlsplit(url).hostname
    reason = problem_with(host) if host else None
    if reason:
        raise InvalidInput(f"arsync does not call {reason}", details={"field": field})


def guard_request(request: httpx.Request) -> None:
    """httpx request hook: refuse the call before it is sent."""
    reason = problem_with(request.url.host)
    if reason:
        raise OutboundRefused(f"arsync does not call {reason}", endpoint=request.url.path)


EVENT_HOOKS = {"request": [guard_request]}
