"""Shared fixtures: databases (SQLite and PostgreSQL), the wired app and the mock ERP.

Every database-touching test runs once per backend. PostgreSQL tests use a database created
for this test session and dropped at its end; under CI=true an unreachable PostgreSQL fails
the run instead of skipping.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from arsync import migrate
from arsync.bootstrap import Container, bootstrap
from arsync.config import Settings
from arsync.db import make_engine, transaction
from arsync.erp.models import Connection
from arsync.mocks.erp import MockErpState, create_mock_erp_app
from arsync.mocks.erp_data import MockErpData
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.models import Base
from arsync.tenancy import service as tenancy

PG_ADMIN_URL = os.environ.get("ARSYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_SECRET_KEY = Fernet.generate_key().decode()
# The suite's mocks and middlewares listen on loopback, so it runs as a single-tenant install
# does, with private addresses allowed (arsync processes it starts inherit this). Tests of the
# rule itself turn it off for their block.
PRIVATE_ALLOWED = {"ARSYNC_OUTBOUND_ALLOW_PRIVATE": "true"}
os.environ.update(PRIVATE_ALLOWED)


def _pg_reachable() -> str | None:
    engine = make_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, migrated, dropped when the session ends."""
    problem = _pg_reachable()
    if problem is not None:
        message = f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {problem}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    name = f"arsync_test_{secrets.token_hex(4)}"
    admin = make_engine(PG_ADMIN_URL)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "arsync.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


def free_port() -> int:
    """A loopback port nothing listens on (the OS's pick, released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The URL of a migrated database, once per backend."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "secret_key": TEST_SECRET_KEY,
        "http_timeout_seconds": 2.0,
        "http_backoff_seconds": 0.01,
        "http_max_retry_after_seconds": 0.2,
        "sync_page_size": 50,
        "sync_max_pages": 200,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


JOB_ENGINE_TABLES = [
    "procrastinate_jobs",
    "procrastinate_periodic_defers",
    "procrastinate_events",
    "procrastinate_workers",
]


def _wipe(container: Container) -> None:
    with container.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            names = [f'"{t.name}"' for t in Base.metadata.sorted_tables] + JOB_ENGINE_TABLES
            connection.execute(sa.text(f"TRUNCATE {', '.join(names)} CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())


@contextmanager
def clean_container(settings: Settings) -> Iterator[Container]:
    """The wired application on ``settings``' database, emptied before and after."""
    app = bootstrap(settings, upgrade_schema=False)
    _wipe(app)
    try:
        yield app
    finally:
        _wipe(app)
        app.close()


@pytest.fixture
def container(database_url: str, tmp_path: Path) -> Iterator[Container]:
    """The wired application on a clean database."""
    with clean_container(make_settings(database_url, tmp_path)) as app:
        yield app


@pytest.fixture
def pg_container(postgres_url: str, tmp_path: Path) -> Iterator[Container]:
    """The wired application on a clean PostgreSQL database (for tests of PostgreSQL-only parts)."""
    with clean_container(make_settings(postgres_url, tmp_path)) as app:
        yield app


@dataclass
class MockErp:
    state: MockErpState
    server: RunningServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def data(self) -> MockErpData:
        return self.state.data


@pytest.fixture
def mock_erp() -> Iterator[MockErp]:
    """The mock ERP on a loopback port: 120 debtors, 230 invoices, 180 payments."""
    state = MockErpState(MockErpData(debtors=120, invoices=230, payments=180, seed=3))
    with serve_in_thread(create_mock_erp_app(state)) as server:
        yield MockErp(state, server)


@dataclass
class Scope:
    tenant_id: str
    environment_id: str
    api_key: str


@pytest.fixture
def scope(container: Container) -> Scope:
    with transaction(container.session_factory) as session:
        created = tenancy.create_tenant(session, f"tenant-{secrets.token_hex(3)}", "prod")
    return Scope(created.tenant_id, created.environment_id, created.api_key)


@pytest.fixture
def connection(container: Container, scope: Scope, mock_erp: MockErp) -> Connection:
    """A REST connection from ``scope`` to the mock ERP, health-checked."""
    saved, _ = container.connections.save_rest(scope.tenant_id, scope.environment_id, mock_erp.url, "090")
    return container.connections.check_health(saved.id, scope=None)
