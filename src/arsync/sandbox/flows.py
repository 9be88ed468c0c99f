"""Sandbox runs started from the web page: run in a thread of the server that started them,
stored per tenant in the database as they go.

Any server can show any run, and a run survives a restart. One that stopped with its server
(no heartbeat for ``STALE_AFTER``, or its process on this host is gone) is marked ERROR when
next read. The token is used for the run only: it is never stored.

A passing run (no MUST failure) can be shared: it then gets a random share token, under which
anyone may read its conformance summary and badge, and nothing else.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from arsync.db import Heartbeat, runner_is_dead, this_runner, transaction, update_if, utcnow
from arsync.errors import InvalidState, NotFound
from arsync.mocks.erp import MockErpState, create_mock_erp_app
from arsync.mocks.erp_data import MockErpData
from arsync.mocks.serving import serve_in_thread
from arsync.outbound import OutboundPolicy
from arsync.sandbox.checks import VERDICTS, CheckResult, Report, SuiteCannotRun, run_checks, select_checks
from arsync.sandbox.models import SandboxCheckResult, SandboxRun
from arsync.sandbox.report import conformance_summary

log = logging.getLogger(__name__)
TOKEN_ENV = "TOKEN"
KEPT_RUNS_PER_TENANT = 50
HEARTBEAT_SECONDS = 10.0
STALE_AFTER = timedelta(seconds=60)
BUILTIN_TARGET = "the built-in mock ERP"


@contextmanager
def builtin_mock_erp(outbound: OutboundPolicy) -> Iterator[tuple[str, str]]:
    """A mock ERP of its own for one built-in run: ``(base URL, token)``.

    It listens on a free loopback port for the run only, with a fresh token and fresh records,
    and without the mock's ``/_mock`` control surface; so no request header chooses what the
    server calls, no other run's writes or faults reach it, and the outbound rule admits
    exactly this origin while it runs.
    """
    token = f"ask_{secrets.token_urlsafe(24)}"
    state = MockErpState(MockErpData(40, 120, 80, seed=11), token=token)
    with serve_in_thread(create_mock_erp_app(state, control=False)) as server, outbound.trusted(server.url):
        yield server.url, token


@dataclass
class RunView:
    """A stored run with its results so far, as the page shows it."""

    id: str
    base_url: str
    builtin: bool
    allow_writes: bool
    status: str
    total: int
    started_at: datetime
    finished_at: datetime | None
    warnings: list[str]
    error: str | None
    suite_run_id: str | None
    latency: dict[str, Any]
    share_token: str | None
    results: list[CheckResult] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status != "RUNNING"

    def counts(self) -> dict[str, int]:
        return {v: sum(1 for r in self.results if r.verdict == v) for v in VERDICTS}

    def blockers(self) -> int:
        return sum(1 for r in self.results if r.verdict == "FAIL" and r.mandatory)

    @property
    def passing(self) -> bool:
        return self.status == "FINISHED" and self.blockers() == 0

    def report(self) -> Report | None:
        if self.status != "FINISHED" or self.suite_run_id is None:
            return None
        return Report(
            self.base_url, self.suite_run_id, self.started_at, self.warnings, self.results, TOKEN_ENV, self.latency
        )


def _stored(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` as JSON can hold it: expected and actual values may be dates or decimals."""
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(document, default=str))
    return loaded


class SandboxHistory:
    def __init__(self, session_factory: sessionmaker[Session], outbound: OutboundPolicy) -> None:
        self.session_factory = session_factory
        self.outbound = outbound

    def start(self, tenant_id: str, base_url: str, token: str, *, allow_writes: bool, builtin: bool) -> str:
        """Start a run in a thread; with ``builtin`` the target is a mock ERP started for it."""
        if builtin:
            base_url, token = BUILTIN_TARGET, ""
        with transaction(self.session_factory) as session:
            run = SandboxRun(
                tenant_id=tenant_id, base_url=base_url, builtin=builtin, allow_writes=allow_writes,
                total=len(select_checks(None)), runner=this_runner(),
            )  # fmt: skip
            session.add(run)
            session.flush()
            self._prune(session, tenant_id)
            run_id = run.id
        threading.Thread(
            target=self._execute, args=(run_id, base_url, token, allow_writes, builtin), name=f"sandbox-{run_id}",
            daemon=True,
        ).start()  # fmt: skip
        return run_id

    @staticmethod
    def _prune(session: Session, tenant_id: str) -> None:
        kept = (
            select(SandboxRun.id)
            .where(SandboxRun.tenant_id == tenant_id)
            .order_by(SandboxRun.started_at.desc())
            .limit(KEPT_RUNS_PER_TENANT)
        )
        session.execute(
            delete(SandboxRun).where(
                SandboxRun.tenant_id == tenant_id, SandboxRun.id.not_in(kept), SandboxRun.share_token.is_(None)
            )
        )

    def _execute(self, run_id: str, base_url: str, token: str, allow_writes: bool, builtin: bool) -> None:
        heartbeat = Heartbeat(self.session_factory, SandboxRun, run_id, HEARTBEAT_SECONDS)
        values: dict[str, Any] = {}
        try:
            if builtin:
                with builtin_mock_erp(self.outbound) as (mock_url, mock_token):
                    self._set(run_id, base_url=mock_url)
                    report = self._run(run_id, mock_url, mock_token, allow_writes)
            else:
                report = self._run(run_id, base_url, token, allow_writes)
            values = {
                "status": "FINISHED", "suite_run_id": report.run_id, "latency": report.latency,
                "must_failed": len(report.failed), "should_warnings": len(report.should_warnings),
            }  # fmt: skip
        except SuiteCannotRun as exc:
            values = {"status": "ERROR", "error": str(exc)}
        except Exception as exc:  # the page must show the run ended, whatever happened
            log.exception("sandbox run %s stopped", run_id)
            values = {"status": "ERROR", "error": f"the sandbox stopped unexpectedly: {type(exc).__name__}: {exc}"}
        finally:
            heartbeat.stop()
            self._set(run_id, finished_at=utcnow(), **values)

    def _run(self, run_id: str, base_url: str, token: str, allow_writes: bool) -> Report:
        return run_checks(
            base_url, token, token_env=TOKEN_ENV, allow_writes=allow_writes,
            progress=lambda result, index, _n: self._record(run_id, index, result),
            on_start=lambda warnings: self._set(run_id, warnings=warnings), guard=self.outbound,
        )  # fmt: skip

    def _record(self, run_id: str, position: int, result: CheckResult) -> None:
        with transaction(self.session_factory) as session:
            session.add(SandboxCheckResult(
                run_id=run_id, position=position, name=result.name, verdict=result.verdict, tier=result.tier,
                document=_stored(result.as_dict()),
            ))  # fmt: skip

    def _set(self, run_id: str, **values: Any) -> None:
        with transaction(self.session_factory) as session:
            run = session.get(SandboxRun, run_id)
            if run is not None:
                update_if(session, run, SandboxRun.status == "RUNNING", **values)

    def get(self, tenant_id: str, run_id: str) -> RunView:
        with transaction(self.session_factory) as session:
            run = session.get(SandboxRun, run_id)
            if run is None or run.tenant_id != tenant_id:
                raise NotFound(f"sandbox run {run_id} not found")
            self._mark_if_abandoned(session, run)
            rows = session.scalars(
                select(SandboxCheckResult.document)
                .where(SandboxCheckResult.run_id == run_id)
                .order_by(SandboxCheckResult.position)
            ).all()
            return _view(run, [CheckResult.from_dict(row) for row in rows])

    @staticmethod
    def _mark_if_abandoned(session: Session, run: SandboxRun) -> None:
        if run.status != "RUNNING":
            return
        if runner_is_dead(run.runner) or utcnow() - run.heartbeat_at > STALE_AFTER:
            update_if(
                session, run, SandboxRun.status == "RUNNING", status="ERROR", finished_at=utcnow(),
                error="the run stopped before it ended: the server running it stopped or restarted; run it again",
            )  # fmt: skip

    def recent(self, tenant_id: str, limit: int = 10) -> list[SandboxRun]:
        with self.session_factory() as session:
            rows = session.scalars(
                select(SandboxRun)
                .where(SandboxRun.tenant_id == tenant_id)
                .order_by(SandboxRun.started_at.desc())
                .limit(limit)
            ).all()
            session.expunge_all()
            return list(rows)

    def share(self, tenant_id: str, run_id: str) -> str:
        """The run's share token (made once); only a finished run with no MUST failure is shared."""
        view = self.get(tenant_id, run_id)
        if not view.passing:
            raise InvalidState(
                f"sandbox run {run_id} cannot be shared: only a finished run with no MUST failure gives a "
                "conformance summary",
            )
        with transaction(self.session_factory) as session:
            run = session.get(SandboxRun, run_id)
            assert run is not None
            update_if(session, run, SandboxRun.share_token.is_(None), share_token=secrets.token_urlsafe(18))
            assert run.share_token is not None
            return run.share_token

    def shared(self, share_token: str) -> dict[str, Any]:
        """The public conformance summary of a shared run."""
        with self.session_factory() as session:
            run = session.scalar(select(SandboxRun).where(SandboxRun.share_token == share_token))
            if run is None:
                raise NotFound("no shared sandbox run has this address")
            tiers = session.execute(
                select(SandboxCheckResult.tier, SandboxCheckResult.verdict).where(SandboxCheckResult.run_id == run.id)
            ).all()
            return conformance_summary(
                run.base_url, run.finished_at or run.started_at, run.allow_writes, [(t, v) for t, v in tiers]
            )


def _view(run: SandboxRun, results: list[CheckResult]) -> RunView:
    return RunView(
        run.id, run.base_url, run.builtin, run.allow_writes, run.status, run.total, run.started_at,
        run.finished_at, list(run.warnings), run.error, run.suite_run_id, dict(run.latency), run.share_token,
        results,
    )  # fmt: skip
