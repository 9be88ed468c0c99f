"""The API served over loopback HTTP, with an authenticated client per tenant."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from arsync.accounts import service as accounts
from arsync.app import create_app
from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.tenancy import service as tenancy
from tests.polling import eventually


@dataclass
class Tenant:
    tenant_id: str
    environment_id: str
    api_key: str
    client: httpx.Client

    @property
    def headers(self) -> dict[str, str]:
        return tenancy.api_headers(self.api_key, self.tenant_id, self.environment_id)


@pytest.fixture
def api_server(container: Container) -> Iterator[RunningServer]:
    with serve_in_thread(create_app(container, background_jobs=True), lifespan="on") as server:
        yield server


def _tenant(container: Container, server: RunningServer, name: str) -> Tenant:
    with transaction(container.session_factory) as session:
        created = tenancy.create_tenant(session, name, "prod")
    client = httpx.Client(base_url=server.url, headers=created.headers, timeout=30)
    return Tenant(created.tenant_id, created.environment_id, created.api_key, client)


@pytest.fixture
def alice(container: Container, api_server: RunningServer) -> Iterator[Tenant]:
    tenant = _tenant(container, api_server, "alice")
    yield tenant
    tenant.client.close()


@pytest.fixture
def bob(container: Container, api_server: RunningServer) -> Iterator[Tenant]:
    tenant = _tenant(container, api_server, "bob")
    yield tenant
    tenant.client.close()


def until(client: httpx.Client, path: str, done: Any, timeout: float = 60) -> dict[str, Any]:
    """GET ``path`` until ``done(body)``; fails the test after ``timeout`` seconds."""
    last: dict[str, Any] = {}

    def probe() -> dict[str, Any] | None:
        nonlocal last
        last = client.get(path).json()
        return last if done(last) else None

    return eventually(probe, path, timeout, explain=lambda: str(last))


# The web UI, signed in over HTTP -------------------------------------------------------

PASSWORD = "correct horse battery"


@dataclass
class Browser:
    client: httpx.Client
    csrf: str


def create_ui_user(container: Container, tenant: Tenant, email: str) -> None:
    with transaction(container.session_factory) as session:
        accounts.create_user(session, tenant.tenant_id, email, PASSWORD)


def login_token(client: httpx.Client) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


# Browsers signed in during a test, closed after it (so no socket is left for the garbage collector).
_signed_in: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_signed_in_browsers() -> Iterator[None]:
    yield
    while _signed_in:
        _signed_in.pop().close()


def sign_in(server: RunningServer, email: str, password: str = PASSWORD) -> Browser:
    client = httpx.Client(base_url=server.url, timeout=30)
    _signed_in.append(client)
    token = login_token(client)
    answer = client.post("/login", data={"email": email, "password": password, "csrf_token": token, "next": "/"})
    assert answer.status_code == 303, answer.text
    home = client.get("/")
    assert home.status_code == 200
    match = re.search(r'name="csrf-token" content="([^"]+)"', home.text)
    assert match
    return Browser(client, match.group(1))
