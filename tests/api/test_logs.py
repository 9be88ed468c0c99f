"""JSON log lines: each parses, carries the request id of its HTTP request or the run id of its
sync, and holds no secret."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from arsync import logs
from arsync.bootstrap import Container
from arsync.mocks.erp import Fault
from arsync.mocks.serving import RunningServer
from tests.conftest import MockErp, Scope

ERP_KEY = "log-test-erp-key-4b1d"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    level = logging.getLogger().level
    handler = logs.configure(json=True, stream=stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(level)


def _parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_request_lines_carry_the_request_id(api_server: RunningServer, log_lines: io.StringIO) -> None:
    with httpx.Client(base_url=api_server.url) as client:
        given = client.get("/api/v1/health", headers={"X-Request-ID": "req-42.a"})
        odd = client.get("/api/v1/health/ready", headers={"X-Request-ID": "no spaces or\tcontrols"})
    assert given.headers["x-request-id"] == "req-42.a"
    assert odd.headers["x-request-id"] != "no spaces or\tcontrols" and len(odd.headers["x-request-id"]) == 32
    access = {line["request_id"]: line for line in _parsed(log_lines) if line["logger"] == "arsync.access"}
    assert access["req-42.a"]["event"] == "GET /api/v1/health 200" and access["req-42.a"]["level"] == "info"
    assert access[odd.headers["x-request-id"]]["duration_ms"] >= 0


def test_sync_lines_carry_the_run_id_and_no_secret(
    container: Container, scope: Scope, mock_erp: MockErp, log_lines: io.StringIO
) -> None:
    saved, _ = container.connections.save_rest(scope.tenant_id, scope.environment_id, mock_erp.url, ERP_KEY)
    container.connections.check_health(saved.id, scope=None)
    mock_erp.state.set_faults([Fault(endpoint="/invoices/list", status=500)])
    run = container.sync.run(saved.id)
    assert run.status == "FAILED"
    lines = _parsed(log_lines)
    of_the_run = [line for line in lines if line.get("run_id") == run.id]
    assert any(line["logger"] == "arsync.erp.sync" and line["level"] == "warning" for line in of_the_run)
    assert ERP_KEY not in log_lines.getvalue()


def test_values_named_as_secrets_are_redacted(log_lines: io.StringIO) -> None:
    logging.getLogger("arsync.test").warning("saved", extra={"api_key": "ark_live_1234", "secret": "whsec_x"})
    [line] = [line for line in _parsed(log_lines) if line["logger"] == "arsync.test"]
    assert line["api_key"] == "[redacted]" and line["secret"] == "[redacted]" and "ark_live_1234" not in str(line)
