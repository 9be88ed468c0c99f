"""On PostgreSQL the customer reads take their own path (web/pg_reads.py): it must answer exactly
as the general path does, for data, pages, filters, auth failures and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from arsync.app import create_app
from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.tenancy import service as tenancy
from arsync.web.pg_reads import PgReads


@pytest.fixture
def servers(pg_container: Container) -> Iterator[tuple[RunningServer, RunningServer]]:
    """The same database served twice: with the PostgreSQL read path, and with it switched off."""
    fast_app = create_app(pg_container)
    general_app = create_app(pg_container)
    general_app.state.pg_reads = None
    with serve_in_thread(fast_app, lifespan="on") as fast, serve_in_thread(general_app, lifespan="on") as general:
        yield fast, general


def _tenant(container: Container, name: str) -> tenancy.NewTenant:
    with transaction(container.session_factory) as session:
        return tenancy.create_tenant(session, name, "prod")


def _create(server: RunningServer, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/v1/customers", headers=headers, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _same_answer(
    servers: tuple[RunningServer, RunningServer], path: str, headers: dict[str, str], **params: Any
) -> httpx.Response:
    fast, general = (httpx.get(f"{s.url}{path}", headers=headers, params=params) for s in servers)
    assert fast.status_code == general.status_code, (path, params, fast.text, general.text)
    assert fast.headers["content-type"] == general.headers["content-type"]
    assert fast.json() == general.json(), (path, params)
    return fast


def test_customer_reads_answer_as_the_general_path(
    pg_container: Container, servers: tuple[RunningServer, RunningServer]
) -> None:
    fast, _ = servers
    alice = _tenant(pg_container, "alice")
    bob = _tenant(pg_container, "bob")
    bodies: list[dict[str, Any]] = [
        {"name": "Acme 100% Ltd", "email": "AR@Acme.example", "metadata": {"tier": 1, "rate": 1.5, "tags": ["a", "é"]}},
        {"name": "under_score/slash", "email": "u@example.com", "phone": "+27 1", "externalId": "X-9"},
        {"name": 'Zürich AG "quoted"'},
        {"name": "Globex", "email": "billing@globex.example", "metadata": {"nested": {"deep": [1, {"x": None}]}}},
        *({"name": f"Bulk {n:03}"} for n in range(120)),
    ]
    created = [_create(fast, alice.headers, body) for body in bodies]
    _create(fast, bob.headers, {"name": "Bob's only customer"})
    with transaction(pg_container.session_factory) as session:
        # An ERP id, a JSON null stored in metadata, and a creation time with no fraction of a second.
        session.execute(
            sa.text("UPDATE customers SET erp_debtor_id = 'D-1', created_at = '2026-01-31 09:30:00+00' WHERE id = :id"),
            {"id": created[1]["id"]},
        )
        session.execute(
            sa.text("UPDATE customers SET metadata = 'null'::jsonb WHERE id = :id"), {"id": created[2]["id"]}
        )

    for item in created[:5]:
        got = _same_answer(servers, f"/api/v1/customers/{item['id']}", alice.headers).json()
        assert got["id"] == item["id"] and got["metadata"] is not None
    assert _same_answer(servers, f"/api/v1/customers/{created[1]['id']}", alice.headers).json()["createdAt"] == (
        "2026-01-31T09:30:00Z"
    )
    assert _same_answer(servers, "/api/v1/customers/cust_missing", alice.headers).status_code == 404
    bobs = httpx.get(f"{fast.url}/api/v1/customers", headers=bob.headers).json()["items"][0]["id"]
    assert _same_answer(servers, f"/api/v1/customers/{bobs}", alice.headers).status_code == 404

    pages: list[dict[str, Any]] = [
        {},
        {"limit": 100},
        {"limit": 100, "page": 2},
        {"limit": 7, "page": 18},
        {"limit": 500},
        {"page": 99},
        {"name": "100%"},
        {"name": "_score/"},
        {"name": "ZÜRICH"},
        {"name": "bulk 1", "limit": 3},
        {"email": "ar@ACME.example"},
        {"erpDebtorId": "D-1"},
        {"name": "acme", "email": "nobody@example.com"},
        {"limit": 0},
        {"limit": 501},
        {"page": 0},
        {"page": "x"},
        {"name": "n" * 201},
    ]
    for params in pages:
        _same_answer(servers, "/api/v1/customers", alice.headers, **params)
    whole = _same_answer(servers, "/api/v1/customers", alice.headers, limit=100, page=2).json()
    assert len(whole["items"]) == 24 and whole["hasMore"] is False
    first = _same_answer(servers, "/api/v1/customers", alice.headers, limit=100).json()
    assert len(first["items"]) == 100 and first["hasMore"] is True
    assert [
        c["name"] for c in _same_answer(servers, "/api/v1/customers", alice.headers, name="100%").json()["items"]
    ] == ["Acme 100% Ltd"]

    key_only = {"Authorization": alice.headers["Authorization"]}
    for headers in [
        {},
        alice.headers | {"Authorization": "Bearer ark_unknown"},
        alice.headers | {"Authorization": "Basic abc"},
        key_only,
        alice.headers | {"X-Tenant-ID": bob.tenant_id},
        alice.headers | {"X-Environment-ID": bob.environment_id},
    ]:
        for path in ["/api/v1/customers", f"/api/v1/customers/{created[0]['id']}"]:
            assert _same_answer(servers, path, headers).status_code in (401, 403)

    reads: PgReads = cast(FastAPI, fast.server.config.app).state.pg_reads
    assert reads._pool is not None, "the fast server did not use its own read path"


def test_a_revoked_key_stops_at_once_on_the_read_path(
    pg_container: Container, servers: tuple[RunningServer, RunningServer]
) -> None:
    fast, _ = servers
    alice = _tenant(pg_container, "alice")
    acme = _create(fast, alice.headers, {"name": "Acme"})
    assert httpx.get(f"{fast.url}/api/v1/customers/{acme['id']}", headers=alice.headers).status_code == 200
    with transaction(pg_container.session_factory) as session:
        assert tenancy.revoke_api_keys(session, alice.tenant_id, alice.environment_id) == 1
    for path in [f"/api/v1/customers/{acme['id']}", "/api/v1/customers"]:
        refused = httpx.get(f"{fast.url}{path}", headers=alice.headers)
        assert refused.status_code == 401
        assert refused.json()["error"] == {
            "code": "UNAUTHORIZED",
            "message": "Unknown or revoked API key",
            "details": None,
        }
