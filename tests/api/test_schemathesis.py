"""Schemathesis against the app's own OpenAPI document, with every check and every phase
(examples, coverage, fuzzing and the stateful phase over inferred links): no 5xx, no response
off-schema, schema-valid requests accepted and schema-invalid ones refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from arsync.app import create_app
from arsync.bootstrap import bootstrap
from arsync.db import transaction
from arsync.mocks.serving import serve_in_thread
from arsync.tenancy import service as tenancy
from tests.conftest import make_settings

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
# Every check is on. Rules JSON Schema cannot state, so a schema-valid request may rightly be refused there: a
# line's quantity × unit price and an invoice's total must fit the amount column, and free-form
# metadata must hold only what both databases store (64-bit integers, 16 levels, 16 KiB), and a
# connection's sync schedule must be a cron expression (five fields, each in its range).
CONFIG = """
# Every check (the CLI's --checks would override the exceptions below, so they are set here).
[checks]
enabled = true

[[operations]]
include-name = ["POST /api/v1/invoices", "PATCH /api/v1/invoices/{invoice_id}",
                "POST /api/v1/customers", "PATCH /api/v1/customers/{customer_id}",
                "PATCH /api/v1/connections/{connection_id}"]
checks.positive_data_acceptance.enabled = false

# The stateful phase takes checks for all its steps at once (no per-operation setting), and its
# chains create invoices and customers, so there the same check is off for every step.
[phases.stateful]
checks.positive_data_acceptance.enabled = false
"""


def test_schemathesis_finds_no_server_error_or_schema_break(postgres_url: str, tmp_path: Path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    container = bootstrap(make_settings(postgres_url, tmp_path), upgrade_schema=False)
    with transaction(container.session_factory) as session:
        created = tenancy.create_tenant(session, "schemathesis", "prod")
    try:
        with serve_in_thread(create_app(container), lifespan="on") as server:
            result = subprocess.run(
                [
                    SCHEMATHESIS, "--config-file", str(config), "run", f"{server.url}/openapi.json",
                    "-H", f"Authorization: Bearer {created.api_key}",
                    "-H", f"X-Tenant-ID: {created.tenant_id}",
                    "-H", f"X-Environment-ID: {created.environment_id}",
                    "--max-examples", "5", "--seed", "1", "--no-color",
                    "--report", "junit", "--report-junit-path", str(tmp_path / "schemathesis.xml"),
                ],
                capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
    finally:
        container.close()
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅  {phase}" in result.stdout, f"the {phase} phase did not run and pass"
    assert "API Links:" in result.stdout and " 0 failures" not in result.stdout
    assert (tmp_path / "schemathesis.xml").read_text().count("<testcase") >= 40
