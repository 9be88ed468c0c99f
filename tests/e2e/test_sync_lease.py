"""A foreground ``arsync sync`` killed mid-run, and one started while another run is going.

The sync runs as a real ``arsync sync`` process against the independent middleware, slowed
down so that the run is caught in the middle; the test kills it with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.erp.models import SyncRun
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.tenancy import service as tenancy
from tests.conftest import PRIVATE_ALLOWED, TEST_SECRET_KEY
from tests.middleware import SkewedMiddleware, create_app
from tests.polling import eventually

ARSYNC = Path(sys.executable).with_name("arsync")


@pytest.fixture
def slow_erp() -> Iterator[tuple[SkewedMiddleware, RunningServer]]:
    erp = SkewedMiddleware(delay=1.0)
    erp.put_debtor("D1", "Debtor 1")
    for n in range(40):
        erp.put_invoice(f"I{n:02d}", "D1", "10.00", "10.00")
    with serve_in_thread(create_app(erp)) as server:
        yield erp, server


def _connection(app: Container, erp: SkewedMiddleware, server: RunningServer) -> str:
    with transaction(app.session_factory) as session:
        created = tenancy.create_tenant(session, "lease", "prod")
    saved, key = app.connections.save_rest(created.tenant_id, created.environment_id, server.url, "090")
    assert key is not None
    erp.token = key
    erp.delay, delay = 0.0, erp.delay
    assert app.connections.check_health(saved.id, scope=None).status == "ACTIVE"
    erp.delay = delay
    return saved.id


def _cli_env(postgres_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARSYNC_")} | PRIVATE_ALLOWED
    return env | {
        "ARSYNC_DATABASE_URL": postgres_url,
        "ARSYNC_DATA_DIR": str(tmp_path),
        "ARSYNC_SECRET_KEY": TEST_SECRET_KEY,
        "ARSYNC_SYNC_PAGE_SIZE": "5",
        "ARSYNC_SYNC_HEARTBEAT_SECONDS": "0.2",
    }


def _run(app: Container, run_id: str) -> SyncRun:
    with app.session_factory() as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        session.expunge(run)
        return run


def _running(app: Container) -> SyncRun | None:
    with app.session_factory() as session:
        run = session.scalars(select(SyncRun).where(SyncRun.status == "RUNNING")).first()
        if run is not None:
            session.expunge(run)
        return run


def test_a_killed_foreground_sync_is_recognised_at_once_and_its_heartbeat_ran_between_pages(
    pg_container: Container, slow_erp: tuple[SkewedMiddleware, RunningServer], postgres_url: str, tmp_path: Path
) -> None:
    erp, server = slow_erp
    connection_id = _connection(pg_container, erp, server)
    process = subprocess.Popen([ARSYNC, "sync", connection_id, "--json"], env=_cli_env(postgres_url, tmp_path),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:

        def going() -> SyncRun | None:
            assert process.poll() is None, "the sync process ended before its run started"
            found = _running(pg_container)
            return found if found is not None and found.runner is not None else None

        run = eventually(going, "the sync to get going")
        first_beat = _run(pg_container, run.id).heartbeat_at
        time.sleep(0.7)  # within one 1 s page: only the timer can have beaten
        assert _run(pg_container, run.id).heartbeat_at > first_beat
        assert run.runner is not None and run.runner.endswith(f":{process.pid}")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    # Seconds later, not after a stale timeout: the process is gone, so Sync now runs at once.
    taken_over, started = pg_container.sync.start(connection_id, "manual")
    assert started and taken_over.id != run.id
    dead = _run(pg_container, run.id)
    assert dead.status == "FAILED" and dead.error and dead.error["kind"] == "Abandoned"
    assert "has ended" in dead.error["message"]


def test_arsync_sync_never_exits_0_for_a_run_it_did_not_run(
    pg_container: Container, slow_erp: tuple[SkewedMiddleware, RunningServer], postgres_url: str, tmp_path: Path
) -> None:
    erp, server = slow_erp
    connection_id = _connection(pg_container, erp, server)
    other, started = pg_container.sync.start(connection_id, "manual")  # queued elsewhere, alive
    assert started
    result = subprocess.run([ARSYNC, "sync", connection_id], env=_cli_env(postgres_url, tmp_path),
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    assert "already running" in result.stderr and other.id in result.stderr
    assert _run(pg_container, other.id).status == "RUNNING"
