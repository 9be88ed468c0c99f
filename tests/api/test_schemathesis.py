"""Schemathesis against the app's own OpenAPI document: no 5xx, no response off-schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from arsync.bootstrap import bootstrap
from arsync.db import transaction
from arsync.mocks.serving import serve_in_thread
from arsync.tenancy import service as tenancy
from arsync.web.app import create_app
from tests.conftest import make_settings

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"


def test_schemathesis_finds_no_server_error_or_schema_break(postgres_url: str, tmp_path: Path):
    container = bootstrap(make_settings(postgres_url, tmp_path), upgrade_schema=False)
    with transaction(container.session_factory) as session:
        created = tenancy.create_tenant(session, "schemathesis", "prod")
    try:
        with serve_in_thread(create_app(container), lifespan="on") as server:
            result = subprocess.run(
                [
                    SCHEMATHESIS, "run", f"{server.url}/openapi.json",
                    "-H", f"Authorization: Bearer {created.api_key}",
                    "-H", f"X-Tenant-ID: {created.tenant_id}",
                    "-H", f"X-Environment-ID: {created.environment_id}",
                    "--checks", CHECKS, "--max-examples", "4", "--seed", "1", "--no-color",
                    "--report", "junit", "--report-junit-path", str(tmp_path / "schemathesis.xml"),
                ],
                capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
    finally:
        container.close()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "31 passed" in result.stdout or " passed" in result.stdout
    assert (tmp_path / "schemathesis.xml").read_text().count("<testcase") >= 25
