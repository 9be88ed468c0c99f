"""Liveness and readiness over loopback HTTP, and ``arsync worker --healthcheck``, as an
orchestrator's probes call them: no key, an answer that names the failing part."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request

from arsync import migrate
from arsync.app import create_app, metrics_allowed
from arsync.bootstrap import Container, bootstrap
from arsync.db import make_engine
from arsync.mocks.serving import serve_in_thread
from tests.conftest import TEST_SECRET_KEY, make_settings

ARSYNC = Path(sys.executable).with_name("arsync")


def _probe(container: Container, path: str) -> httpx.Response:
    with serve_in_thread(create_app(container)) as server:
        return httpx.get(f"{server.url}{path}", timeout=10)


def _readiness_of(database_url: str, tmp_path: Path) -> httpx.Response:
    """The readiness answer of a server on ``database_url``, which arsync does not migrate first."""
    app = bootstrap(make_settings(database_url, tmp_path), upgrade_schema=False)
    try:
        return _probe(app, "/api/v1/health/ready")
    finally:
        app.close()


def test_a_migrated_database_is_ready(container: Container):
    assert _probe(container, "/api/v1/health").json()["status"] == "ok"
    ready = _probe(container, "/api/v1/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["checks"] == {"database": "ok", "migrations": "ok"}


def test_a_database_behind_this_version_is_not_ready(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    head = migrate.head_revision()
    previous = f"{int(head) - 1:04d}"
    engine = make_engine(url)
    migrate.upgrade(engine, previous)
    engine.dispose()
    answer = _readiness_of(url, tmp_path)
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"database": "ok", "migrations": f"at {previous}, this version needs {head}"}


def test_an_unreachable_database_is_not_ready_and_the_answer_holds_no_address(tmp_path: Path, unused_port: int):
    url = f"postgresql+psycopg://arsync:hunter2@127.0.0.1:{unused_port}/ledger"
    answer = _readiness_of(url, tmp_path)
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"database": "unreachable (OperationalError)"}
    assert "hunter2" not in answer.text and str(unused_port) not in answer.text


def _healthcheck(database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    environment = os.environ | {
        "ARSYNC_DATABASE_URL": database_url,
        "ARSYNC_SECRET_KEY": TEST_SECRET_KEY,
        "ARSYNC_DATA_DIR": str(tmp_path),
    }
    command = [str(ARSYNC), "worker", "--healthcheck"]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)


def test_the_worker_healthcheck_passes_when_the_queue_is_reachable(postgres_url: str, tmp_path: Path):
    result = _healthcheck(postgres_url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "job queue is reachable" in result.stderr


def test_the_worker_healthcheck_fails_without_a_reachable_queue(tmp_path: Path, unused_port: int):
    down = _healthcheck(f"postgresql+psycopg://arsync:hunter2@127.0.0.1:{unused_port}/ledger", tmp_path)
    assert down.returncode == 1
    assert "unreachable (OperationalError)" in down.stderr and "hunter2" not in down.stderr
    on_sqlite = _healthcheck(f"sqlite:///{tmp_path / 'arsync.db'}", tmp_path)
    assert on_sqlite.returncode == 1 and "needs PostgreSQL" in on_sqlite.stderr


def test_metrics_need_the_token_when_one_is_set(postgres_url: str, tmp_path: Path):
    guarded = bootstrap(make_settings(postgres_url, tmp_path, metrics_token="scrape-me"), upgrade_schema=False)
    try:
        with serve_in_thread(create_app(guarded)) as server:
            refused = httpx.get(f"{server.url}/metrics", timeout=10)
            wrong = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
            allowed = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer scrape-me"}, timeout=10)
    finally:
        guarded.close()
    assert (refused.status_code, wrong.status_code, allowed.status_code) == (403, 403, 200)
    assert "scrape-me" not in refused.text
    families = {family.name for family in text_string_to_metric_families(allowed.text)}
    assert {"arsync_sync_runs", "arsync_pushes", "arsync_erp_calls", "arsync_job_queue_depth"} <= families


def test_without_a_token_metrics_answer_this_machine_only():
    def request_from(host: str) -> Request:
        return Request({"type": "http", "method": "GET", "path": "/metrics", "headers": [], "client": (host, 4000)})

    assert metrics_allowed(request_from("127.0.0.1"), None) and metrics_allowed(request_from("::1"), None)
    assert not metrics_allowed(request_from("10.0.0.7"), None)
    assert not metrics_allowed(request_from("127.0.0.1"), "a-token")
