"""The ``arsync`` CLI as a user runs it: real processes, real HTTP to the mock ERP."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from arsync.db import make_engine
from arsync.erp.contract import format_datetime
from arsync.mocks.serving import serve_in_thread
from arsync.mocks.xero import MockXeroState, create_mock_xero_app, mock_xero_settings
from tests.conftest import PRIVATE_ALLOWED, TEST_SECRET_KEY, MockErp

ARSYNC = str(Path(sys.executable).parent / "arsync")


def run_cli(*args: str, env: dict[str, str], expect: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([ARSYNC, *args], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == expect, f"exit {result.returncode}\nstdout:{result.stdout}\nstderr:{result.stderr}"
    return result


def one_json(result: subprocess.CompletedProcess[str]) -> Any:
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line, got: {result.stdout!r}"
    return json.loads(lines[0])


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARSYNC_")} | PRIVATE_ALLOWED
    env.update(
        ARSYNC_DATA_DIR=str(tmp_path / "data"),
        ARSYNC_SECRET_KEY=TEST_SECRET_KEY,
        ARSYNC_SYNC_PAGE_SIZE="40",
        ARSYNC_HTTP_BACKOFF_SECONDS="0.01",
        COLUMNS="120",
    )
    if database_url.startswith("postgresql"):
        env["ARSYNC_DATABASE_URL"] = database_url
    return env


def test_tenant_connection_sync_export(cli_env: dict[str, str], mock_erp: MockErp):
    name = f"acme-{secrets.token_hex(3)}"
    tenant = one_json(run_cli("tenant", "create", name, "--environment", "prod", "--json", env=cli_env))
    assert set(tenant) == {"tenantId", "environmentId", "apiKey"}
    assert tenant["apiKey"].startswith("ark_")
    staging = one_json(run_cli("environment", "create", name, "staging", "--json", env=cli_env))
    assert staging["tenantId"] == tenant["tenantId"] and staging["apiKey"].startswith("ark_")
    assert staging["environmentId"] != tenant["environmentId"] and staging["name"] == "staging"
    twice = run_cli("environment", "create", name, "staging", env=cli_env, expect=1)
    assert "already has an environment named 'staging'" in twice.stderr

    refused = run_cli(
        "connection", "add-rest", "--tenant", name, "--environment", "prod", "--base-url", mock_erp.url + "/",
        env=cli_env, expect=1,
    )  # fmt: skip
    assert "must not end with a slash" in refused.stderr

    added = one_json(
        run_cli(
            "connection",
            "add-rest",
            "--tenant",
            tenant["tenantId"],
            "--environment",
            "prod",
            "--base-url",
            mock_erp.url,
            "--bank-account-code",
            "090",
            "--json",
            env=cli_env,
        )
    )
    assert added["status"] == "ACTIVE" and added["apiKey"].startswith("ask_")
    assert added["connectionId"].startswith("conn_")

    run = one_json(run_cli("sync", added["connectionId"], "--json", env=cli_env))
    assert run["status"] == "SUCCEEDED" and run["full"] is True and run["modifiedSince"] is None
    assert run["counts"]["invoices"]["created"] == 230
    assert run["warnings"][0]["erpInvoiceId"].startswith("INV-MISSING-")

    mock_erp.data.mutate({"invoices": 4})
    again = one_json(run_cli("sync", added["connectionId"], "--json", env=cli_env))
    since = datetime.fromisoformat(run["startedAt"]) - timedelta(seconds=300)  # the default lookback
    assert again["status"] == "SUCCEEDED" and again["modifiedSince"] == format_datetime(since)
    assert again["counts"]["invoices"]["updated"] == 4

    mock_erp.data.delete("invoices", [5])
    reconciled = one_json(run_cli("reconcile", added["connectionId"], "--json", env=cli_env))
    assert reconciled["kind"] == "reconcile" and reconciled["status"] == "SUCCEEDED"
    assert reconciled["report"]["entities"]["invoices"]["missingInErp"] == 1
    assert reconciled["report"]["entities"]["invoices"]["missingExamples"] == ["INV-0000006"]
    shown = run_cli("reconcile", added["connectionId"], env=cli_env)
    assert "ledger equals ERP" in shown.stdout and "gone from the ERP" in shown.stdout

    ledger = one_json(run_cli("export", "--tenant", name, "--environment", "prod", "--json", env=cli_env))
    assert len(ledger["invoices"]) == 230
    assert {"erpInvoiceId", "amountTotal", "lines"} <= set(ledger["invoices"][0])
    assert all(c["erpDebtorId"] for c in ledger["customers"])

    mock_erp.state.token = "ask_something-else"
    failed = run_cli("sync", added["connectionId"], env=cli_env, expect=1)
    assert "FAILED" in failed.stdout and "rotate the key" in failed.stdout
    assert added["apiKey"] not in failed.stdout + failed.stderr


def test_middleware_key_is_not_stored_in_clear(cli_env: dict[str, str], mock_erp: MockErp):
    name = f"vault-{secrets.token_hex(3)}"
    run_cli("tenant", "create", name, "--json", env=cli_env)
    added = one_json(
        run_cli(
            "connection",
            "add-rest",
            "--tenant",
            name,
            "--environment",
            "prod",
            "--base-url",
            mock_erp.url,
            "--json",
            env=cli_env,
        )
    )
    url = cli_env.get("ARSYNC_DATABASE_URL") or f"sqlite:///{cli_env['ARSYNC_DATA_DIR']}/arsync.db"
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM erp_connections")).all()
    engine.dispose()
    stored = repr(rows)
    assert added["apiKey"] not in stored
    assert "…" + added["apiKey"][-4:] in stored, "only the masked hint is kept readable"


def test_nomod_connection_from_the_cli(cli_env: dict[str, str]):
    name = f"nomod-{secrets.token_hex(3)}"
    run_cli("tenant", "create", name, "--json", env=cli_env)
    missing = run_cli("connection", "set-nomod", "--tenant", name, "--environment", "prod", env=cli_env, expect=2)
    assert "NOMOD_API_KEY is not set" in missing.stderr
    key = "sk_test_cli_" + secrets.token_hex(8)
    env = cli_env | {"NOMOD_API_KEY": key, "HOOK_SECRET": "whsec_" + "QUJD" * 8}
    saved = one_json(run_cli(
        "connection", "set-nomod", "--tenant", name, "--environment", "prod", "--outbound",
        "--base-url", "http://127.0.0.1:8710", "--webhook-secret-env", "HOOK_SECRET", "--json", env=env,
    ))  # fmt: skip
    assert saved["invoiceSync"] == {"outbound": True} and saved["webhookSecretSet"] is True
    assert saved["baseUrl"] == "http://127.0.0.1:8710" and saved["apiKeyHint"].endswith(key[-4:])
    shown = run_cli("connection", "set-nomod", "--tenant", name, "--environment", "prod", env=env)
    assert key not in shown.stdout + shown.stderr and "outbound invoice sync: off" in shown.stdout
    bad = run_cli("connection", "set-nomod", "--tenant", name, "--environment", "prod",
                  env=cli_env | {"NOMOD_API_KEY": "pk_live_nope"}, expect=1)  # fmt: skip
    assert "apiKey must be a Nomod secret key" in bad.stderr and "pk_live_nope" not in bad.stderr


def test_demo_twice_full_then_incremental(tmp_path: Path):
    # The embedded default, as a new user runs it: private addresses refused.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARSYNC_")}
    env["COLUMNS"] = "120"
    first = subprocess.run(
        [ARSYNC, "demo", "--no-serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "SUCCEEDED (full" in first.stdout and "platform API key: ark_" in first.stdout
    assert (tmp_path / ".arsync" / "arsync.db").exists()
    key_file = tmp_path / ".arsync" / "secret.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"

    second = subprocess.run(
        [ARSYNC, "demo", "--no-serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "SUCCEEDED (incremental since" in second.stdout

    # Each run takes one invoice through Nomod: synced, pushed, paid by webhook, payment pushed.
    for output, number in ((first.stdout, "DEMO-0001"), (second.stdout, "DEMO-0002")):
        assert f"draft invoice {number}" in output and "finalized → Nomod invoice" in output
        assert "ERP invoice push SUCCEEDED" in output and "webhook HTTP 200" in output
        assert "invoice PAID" in output and "ERP payment push SUCCEEDED" in output
    nomod = json.loads((tmp_path / ".arsync" / "mock-nomod.json").read_bytes())
    assert (len(nomod["customers"]), len(nomod["invoices"]), len(nomod["charges"])) == (1, 2, 2)


def test_demo_serves_api_until_interrupted(tmp_path: Path):
    # The embedded default, as a new user runs it: private addresses refused.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARSYNC_")}
    env["COLUMNS"] = "250"
    port = _dead_url().rsplit(":", 1)[1]  # a free port, asked for by --port
    process = subprocess.Popen([ARSYNC, "demo", "--port", port], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               text=True)  # fmt: skip
    try:
        assert process.stdout is not None
        api = mock = nomod = curl = password = None
        for line in process.stdout:
            if line.startswith("web UI user: "):
                password = line.split()[5]
            elif line.startswith("API: "):
                api = line.split()[1].removesuffix("/api/v1")
            elif line.startswith("mock ERP: ") and api:
                mock, nomod = line.split()[2], line.split()[5]
            elif "curl -s" in line:
                curl = line
            elif line.startswith("Press Ctrl-C"):
                break
        assert api and mock and curl, "the demo did not print where it serves"
        assert api == f"http://127.0.0.1:{port}"
        headers = dict(re.findall(r"-H '([^:]+): ([^']+)'", curl))
        runs = httpx.get(f"{api}/api/v1/sync-runs", headers=headers).json()
        assert runs["items"][0]["status"] == "SUCCEEDED"
        answer = httpx.post(f"{mock}/health", json={"schemaVersion": "1"}, headers={"Authorization": "Bearer ask_x"})
        assert answer.json()["ok"] is True
        # A finance user signs in at the printed address with the printed password and sees the ledger.
        assert password, "the demo did not print the UI user's password"
        with httpx.Client(base_url=api, timeout=30) as browser:
            login = browser.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
            assert token
            signed_in = browser.post(
                "/login", data={"email": "demo@example.com", "password": password, "csrf_token": token.group(1)}
            )
            assert signed_in.status_code == 303
            invoices = browser.get("/invoices")
            assert invoices.status_code == 200 and invoices.text.count('href="/invoices/inv_') == 25
            assert "Sync now" in invoices.text and "SUCCEEDED" in invoices.text
        state = httpx.get(f"{nomod}/_mock/state").json()
        assert (state["customers"], state["invoices"], state["webhooksDelivered"]) == (1, 1, 1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_sandbox_check_from_the_cli(cli_env: dict[str, str], tmp_path: Path):
    from arsync.mocks.erp import MockErpState, create_mock_erp_app
    from arsync.mocks.erp_data import MockErpData
    from arsync.mocks.serving import serve_in_thread

    token = "ask_cli_sandbox_" + secrets.token_hex(6)
    env = cli_env | {"MW_TOKEN": token}
    good = MockErpState(MockErpData(40, 80, 60, seed=2), token=token)
    broken = MockErpState(MockErpData(40, 80, 60, seed=2), token=token, breakages=frozenset({"page2-500"}))
    with serve_in_thread(create_mock_erp_app(good)) as ok_server, serve_in_thread(create_mock_erp_app(broken)) as bad:
        badge = tmp_path / "badge.svg"
        passed = run_cli("sandbox", "check", "--base-url", ok_server.url, "--token-env", "MW_TOKEN",
                         "--allow-writes", "--badge", str(badge), env=env)  # fmt: skip
        assert re.search(r"^PASS health ", passed.stdout, re.M) and " 0 failed" in passed.stdout
        assert "writes prefixed SBX-" in passed.stdout
        assert "Nudge contract v1" in badge.read_text() and ">conforms<" in badge.read_text()

        report_json, report_xml = tmp_path / "sandbox.json", tmp_path / "sandbox.xml"
        failed = run_cli("sandbox", "check", "--base-url", bad.url, "--token-env", "MW_TOKEN", "--json",
                         str(report_json), "--junit", str(report_xml), env=env, expect=1)  # fmt: skip
        assert re.search(r"^FAIL server\.no_5xx", failed.stdout, re.M)
        assert "reproduce: curl" in failed.stdout and '"Authorization: Bearer $MW_TOKEN"' in failed.stdout
        assert token not in failed.stdout + failed.stderr
        assert token not in report_json.read_text() and token not in report_xml.read_text()
        document = json.loads(report_json.read_text())
        assert document["summary"]["FAIL"] == 1
        assert document["conformance"]["conforms"] is False and document["conformance"]["must"]["fail"] == 1
        assert "<testsuite" in report_xml.read_text()

        refused = run_cli("sandbox", "check", "--base-url", ok_server.url, "--token-env", "MW_TOKEN",
                          env=cli_env | {"MW_TOKEN": "ask_wrong"}, expect=2)  # fmt: skip
        assert "every call got 401: check the token" in refused.stderr
        slash = run_cli("sandbox", "check", "--base-url", ok_server.url + "/", "--token-env", "MW_TOKEN",
                        env=env, expect=2)  # fmt: skip
        assert "must not end with a slash" in slash.stderr  # as the connection form says

    # A SHOULD breach (modifiedSince ignored) warns and exits 0; --strict makes it exit 1.
    slow = MockErpState(MockErpData(20, 30, 20, seed=2), token=token,
                        breakages=frozenset({"ignore-modified-since"}))  # fmt: skip
    with serve_in_thread(create_mock_erp_app(slow)) as server:
        args = (
            "sandbox",
            "check",
            "--base-url",
            server.url,
            "--token-env",
            "MW_TOKEN",
            "--only",
            "debtors.modified_since_future",
        )
        warned = run_cli(*args, env=env)
        assert re.search(r"^WARN debtors\.modified_since_future +\(SHOULD\)", warned.stdout, re.M)
        run_cli(*args, "--strict", env=env, expect=1)
    run_cli("sandbox", "check", "--base-url", "http://127.0.0.1:9", "--token-env", "MW_TOKEN", env=env, expect=2)
    unset = run_cli("sandbox", "check", "--base-url", "http://127.0.0.1:9", "--token-env", "NOPE", env=env, expect=2)
    assert "NOPE is not set" in unset.stderr


def test_mock_erp_on_port_0_prints_the_port_it_got(cli_env: dict[str, str]):
    process = subprocess.Popen([ARSYNC, "mock-erp", "--port", "0"], env=cli_env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        port = int(re.search(r"on http://127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
        assert port != 0
        answer = httpx.post(f"http://127.0.0.1:{port}/health", json={"schemaVersion": "1"},
                            headers={"Authorization": "Bearer ask_any"}, timeout=10)  # fmt: skip
        assert answer.status_code == 200 and answer.json()["ok"] is True
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_xero_authorize_link_from_the_cli(cli_env: dict[str, str]):
    name = f"xero-{secrets.token_hex(3)}"
    run_cli("tenant", "create", name, "--json", env=cli_env)
    unconfigured = run_cli("connection", "xero-authorize", "--tenant", name, "--environment", "prod",
                           env=cli_env, expect=1)  # fmt: skip
    assert "ARSYNC_XERO_CLIENT_ID" in unconfigured.stderr
    state = MockXeroState()
    state.add_organisation("CLI Co", 2, 2, 0)
    with serve_in_thread(create_mock_xero_app(state)) as server:
        env = cli_env | mock_xero_settings(server.url, state.config)
        shown = run_cli("connection", "xero-authorize", "--tenant", name, "--environment", "prod",
                        "--bank-account-code", "090", env=env)  # fmt: skip
        url = shown.stdout.strip()
        assert url.startswith(f"{server.url}/identity/connect/authorize?") and "code_challenge=" in url
        assert "Allow access" in httpx.get(url).text
        assert state.config.client_secret not in shown.stdout + shown.stderr


def test_user_create_and_set_password(cli_env: dict[str, str]):
    name = f"people-{secrets.token_hex(3)}"
    run_cli("tenant", "create", name, "--json", env=cli_env)
    email = f"{name}@example.com"
    password = "a long enough password"
    env = cli_env | {"UI_PASSWORD": password}
    made = one_json(run_cli("user", "create", email, "--tenant", name, "--password-env", "UI_PASSWORD", "--json",
                            env=env))  # fmt: skip
    assert made["email"] == email and made["userId"].startswith("usr_")

    again = run_cli("user", "create", email.upper(), "--tenant", name, "--password-env", "UI_PASSWORD", env=env,
                    expect=1)  # fmt: skip
    assert "already exists" in again.stderr and password not in again.stdout + again.stderr
    short = run_cli("user", "create", f"x-{email}", "--tenant", name, "--password-env", "UI_PASSWORD",
                    env=cli_env | {"UI_PASSWORD": "short"}, expect=1)  # fmt: skip
    assert "at least 10 characters" in short.stderr
    nowhere = run_cli("user", "create", f"y-{email}", "--tenant", "no-such-tenant", "--password-env", "UI_PASSWORD",
                      env=env, expect=1)  # fmt: skip
    assert "tenant 'no-such-tenant' not found" in nowhere.stderr
    unset = run_cli("user", "create", f"z-{email}", "--tenant", name, "--password-env", "NOT_SET", env=env, expect=2)
    assert "NOT_SET is not set" in unset.stderr

    reset = run_cli("user", "set-password", email, "--password-env", "UI_PASSWORD",
                    env=cli_env | {"UI_PASSWORD": "another long password"})  # fmt: skip
    assert "sessions were signed out" in reset.stdout


def test_a_connection_to_a_dead_address_is_kept_but_says_so_in_words_and_exit_codes(cli_env: dict[str, str]) -> None:
    name = f"dead-{secrets.token_hex(3)}"
    first_run = run_cli("tenant", "create", name, "--json", env=cli_env)
    if "ARSYNC_DATABASE_URL" not in cli_env:  # the default SQLite file, new in this data directory
        assert "no arsync database in" in first_run.stderr and "ARSYNC_DATA_DIR" in first_run.stderr
    dead_url = _dead_url()
    added = run_cli("connection", "add-rest", "--tenant", name, "--environment", "prod", "--base-url", dead_url,
                    "--json", env=cli_env, expect=1)  # fmt: skip
    assert "no arsync database" not in added.stderr  # the database exists now
    connection = one_json(added)
    assert connection["status"] == "FAILED" and connection["statusReason"]
    failed = run_cli("sync", connection["connectionId"], env=cli_env, expect=1)
    assert "None" not in failed.stdout and "could not be reached" in failed.stdout
    # Piped, the list is tab-separated and no id is cut to the terminal's width.
    listed = run_cli("connection", "list", "--tenant", name, "--environment", "prod", env=cli_env | {"COLUMNS": "40"})
    header, row = listed.stdout.splitlines()
    assert header.split("\t") == ["id", "transport", "base URL", "status", "key"]
    assert row.split("\t")[:4] == [connection["connectionId"], "rest", dead_url, "FAILED"]


def _dead_url() -> str:
    """A loopback URL whose port was free a moment ago and is closed now: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
