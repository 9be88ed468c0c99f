"""Sandbox runs from the web page are stored per tenant: they outlive the server that ran them,
any server shows them, and a passing one can be shared as a public summary and badge."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import httpx
import orjson

from arsync.app import create_app
from arsync.bootstrap import Container
from arsync.db import transaction, utcnow
from arsync.mocks.erp import MockErpState, create_mock_erp_app
from arsync.mocks.erp_data import MockErpData
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.sandbox.checks import select_checks
from arsync.sandbox.models import SandboxCheckResult, SandboxRun
from tests.api.conftest import Browser, Tenant, create_ui_user, sign_in
from tests.polling import eventually

TOKEN = "ask_history_token_4d1e"


def _start(browser: Browser, **form: str) -> str:
    answer = browser.client.post("/sandbox/runs", data={"csrf_token": browser.csrf, **form}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    match = re.search(r"run=([\w-]+)", answer.headers["location"])
    assert match, answer.headers["location"]
    return match.group(1)


def _wait_until_done(browser: Browser, run_id: str, timeout: float = 120) -> str:
    def ended() -> str | None:
        panel = browser.client.get(f"/sandbox/runs/{run_id}")
        assert panel.status_code == 200
        return None if "hx-trigger" in panel.text else panel.text

    return eventually(ended, "the sandbox run to end", timeout, interval=0.2)


def test_a_run_is_stored_shown_by_another_server_and_shared_as_a_badge(
    container: Container, api_server: RunningServer, alice: Tenant, bob: Tenant
) -> None:
    create_ui_user(container, alice, "alice@example.com")
    create_ui_user(container, bob, "bob@example.com")
    alice_ui = sign_in(api_server, "alice@example.com")
    run_id = _start(alice_ui, builtin="true")
    panel = _wait_until_done(alice_ui, run_id)
    assert "No blocking failures." in panel

    total = len(select_checks(None))
    with container.session_factory() as session:
        run = session.get(SandboxRun, run_id)
        assert run is not None and run.status == "FINISHED" and run.must_failed == 0
        stored = session.query(SandboxCheckResult).filter_by(run_id=run_id).count()
    assert stored == total

    # A second server on the same database (a restart, or another instance behind a load
    # balancer) shows the run and its reports.
    with serve_in_thread(create_app(container, background_jobs=True), lifespan="on") as other:
        elsewhere = sign_in(other, "alice@example.com")
        page = elsewhere.client.get(f"/sandbox?product=nudge&run={run_id}")
        assert page.status_code == 200 and "No blocking failures." in page.text and "Recent runs" in page.text
        report = orjson.loads(elsewhere.client.get(f"/sandbox/runs/{run_id}/report.json").content)
        assert report["summary"]["PASS"] == total and len(report["checks"]) == total
        assert ET.fromstring(elsewhere.client.get(f"/sandbox/runs/{run_id}/report.xml").content).get("tests") == str(
            total
        )

        # Another tenant cannot see it.
        bob_ui = sign_in(other, "bob@example.com")
        assert bob_ui.client.get(f"/sandbox/runs/{run_id}").status_code == 404
        assert bob_ui.client.get(f"/sandbox/runs/{run_id}/report.json").status_code == 404
        refused = bob_ui.client.post(
            f"/sandbox/runs/{run_id}/share", data={"csrf_token": bob_ui.csrf}, follow_redirects=True
        )
        assert "not found" in refused.text

        shared = elsewhere.client.post(
            f"/sandbox/runs/{run_id}/share", data={"csrf_token": elsewhere.csrf}, follow_redirects=True
        )
        match = re.search(r"/sandbox/shared/([\w-]+)\.svg", shared.text)
        assert match, shared.text
        share_token = match.group(1)

    # The summary and the badge are public: no session, no key.
    with httpx.Client(base_url=api_server.url) as anonymous:
        summary = anonymous.get(f"/sandbox/shared/{share_token}.json")
        assert summary.status_code == 200
        body = summary.json()
        assert body["conforms"] is True and body["schemaVersion"] == "1" and body["checks"] == total
        assert body["must"]["fail"] == 0 and body["must"]["pass"] > 0 and body["writesChecked"] is True
        assert TOKEN not in summary.text and alice.api_key not in summary.text
        badge = anonymous.get(f"/sandbox/shared/{share_token}.svg")
        assert badge.status_code == 200 and badge.headers["content-type"].startswith("image/svg+xml")
        svg = ET.fromstring(badge.content)
        assert svg.tag.endswith("svg") and "conforms" in badge.text and "Nudge contract v1" in badge.text
        assert anonymous.get("/sandbox/shared/not-a-token.json").status_code == 404
        # The run itself stays private.
        assert anonymous.get(f"/sandbox/runs/{run_id}", follow_redirects=False).status_code in (303, 307)
    for browser in (alice_ui, elsewhere, bob_ui):
        browser.client.close()


def test_a_failing_run_cannot_be_shared(container: Container, api_server: RunningServer, alice: Tenant) -> None:
    create_ui_user(container, alice, "alice@example.com")
    alice_ui = sign_in(api_server, "alice@example.com")
    state = MockErpState(MockErpData(10, 20, 10, seed=3), token=TOKEN, breakages=frozenset({"no-auth"}))
    with container.outbound.private_addresses(allowed=True), serve_in_thread(create_mock_erp_app(state)) as broken:
        run_id = _start(alice_ui, base_url=broken.url, token=TOKEN)
        panel = _wait_until_done(alice_ui, run_id)
    assert "blocking failure" in panel and "Share conformance badge" not in panel
    answer = alice_ui.client.post(
        f"/sandbox/runs/{run_id}/share", data={"csrf_token": alice_ui.csrf}, follow_redirects=True
    )
    assert "cannot be shared" in answer.text
    with container.session_factory() as session:
        run = session.get(SandboxRun, run_id)
        assert run is not None and run.share_token is None and run.must_failed >= 1
        # The token was used for the run only.
        documents = [r.document for r in session.query(SandboxCheckResult).filter_by(run_id=run_id)]
    assert documents and TOKEN not in orjson.dumps(documents).decode()
    alice_ui.client.close()


def test_a_run_whose_server_stopped_is_marked_as_such(
    container: Container, api_server: RunningServer, alice: Tenant
) -> None:
    create_ui_user(container, alice, "alice@example.com")
    alice_ui = sign_in(api_server, "alice@example.com")
    with transaction(container.session_factory) as session:
        run = SandboxRun(
            tenant_id=alice.tenant_id, base_url="https://mw.example.com", total=10, runner="elsewhere:1",
            started_at=utcnow() - timedelta(minutes=5), heartbeat_at=utcnow() - timedelta(minutes=5),
        )  # fmt: skip
        session.add(run)
        session.flush()
        run_id = run.id
    panel = alice_ui.client.get(f"/sandbox/runs/{run_id}")
    assert panel.status_code == 200 and "hx-trigger" not in panel.text
    assert "stopped before it ended" in panel.text
    with container.session_factory() as session:
        stored = session.get(SandboxRun, run_id)
        assert stored is not None and stored.status == "ERROR" and stored.finished_at is not None
    alice_ui.client.close()
