"""The inbound sync: debtors, then invoices, then payments, page by page, into the ledger.

A run goes through three stages per entity, dlt-style: *extract* (the connector fetches and
validates a page), *guard* (paging must advance) and *load* (:class:`LedgerLoader` upserts the
page). Each page commits on its own, with the run's counts and heartbeat, so committed pages
survive a failure and a re-run is idempotent. The next page is fetched on a helper thread
while the current one is written, and at most two pages are ever held in memory.

The watermark (``Connection.sync_watermark``) is the start time of the last successful run.
It moves only in the final transaction of a run that succeeded.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from arsync.db import transaction, utcnow
from arsync.erp import contract
from arsync.erp.loader import LedgerLoader, PageResult
from arsync.erp.models import Connection, SyncRun
from arsync.erp.port import ENTITIES, Entity, ErpConnector, Page
from arsync.errors import ConnectorError, ContractViolation, NotFound, PagingError
from arsync.jobs.queue import TASK_SYNC, JobQueue

log = logging.getLogger(__name__)
ConnectorFactory = Callable[[Connection], ErpConnector]


@dataclass
class EntityStats:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    pages: int = 0
    records: int = 0
    inferred: int = 0  # debtors only: created from an invoice's erpDebtorId and debtorName

    def add(self, page: PageResult, records: int) -> None:
        self.pages += 1
        self.records += records
        self.created += page.created
        self.updated += page.updated
        self.unchanged += page.unchanged
        self.skipped += page.skipped


class SyncProgress(Protocol):
    def __call__(self, entity: Entity, stats: EntityStats) -> None: ...


@dataclass(frozen=True)
class SyncOptions:
    page_size: int = 1000
    max_pages: int = 100_000
    stale_after_seconds: int = 600
    max_warnings: int = 100


@dataclass
class _RunState:
    run_id: str
    tenant_id: str
    environment_id: str
    modified_since: datetime | None
    stats: dict[Entity, EntityStats] = field(default_factory=lambda: {e: EntityStats() for e in ENTITIES})
    warnings: list[dict[str, Any]] = field(default_factory=list)
    warnings_omitted: int = 0

    def stats_json(self) -> dict[str, Any]:
        return {entity: asdict(stats) for entity, stats in self.stats.items()}


# Tables written per entity, refreshed with ANALYZE as they grow (see _refresh_statistics).
ENTITY_TABLES: dict[Entity, tuple[str, ...]] = {
    "debtors": ("customers",),
    "invoices": ("customers", "invoices", "invoice_lines"),
    "payments": ("payments",),
}
FIRST_ANALYZE_AT = 1000

ERP_ID_FIELD: dict[Entity, str] = {
    "debtors": "erp_debtor_id",
    "invoices": "erp_invoice_id",
    "payments": "erp_payment_id",
}


def _page_signature(entity: Entity, items: Sequence[Any]) -> str | None:
    """A digest of the page's ERP ids, to spot a middleware serving the same page again."""
    if not items:
        return None
    attribute = ERP_ID_FIELD[entity]
    ids = "\x1f".join(getattr(item, attribute) for item in items)
    return hashlib.blake2b(ids.encode(), digest_size=16).hexdigest()


class SyncEngine:
    """Starts and executes sync runs; one RUNNING run per connection at most."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        connector_factory: ConnectorFactory,
        options: SyncOptions | None = None,
        queue: JobQueue | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.connector_factory = connector_factory
        self.options = options or SyncOptions()
        self.queue = queue

    # Starting ---------------------------------------------------------------------------

    def start(
        self, connection_id: str, trigger: str = "manual", full: bool = False, *, enqueue: bool = False
    ) -> tuple[SyncRun, bool]:
        """Create a RUNNING run, or return the one already running (``started`` is False).

        With ``enqueue`` the run's job is queued in the same transaction, so a run never exists
        without the job that executes it.
        """
        for _ in range(3):
            try:
                return self._try_start(connection_id, trigger, full, enqueue)
            except IntegrityError:
                # Another process inserted its RUNNING run between our check and our insert.
                with self.session_factory() as session:
                    running = self._running(session, connection_id)
                    if running is not None:
                        return running, False
        raise RuntimeError(f"could not start a sync run for {connection_id}")

    @staticmethod
    def _running(session: Session, connection_id: str) -> SyncRun | None:
        return session.scalar(
            select(SyncRun).where(SyncRun.connection_id == connection_id, SyncRun.status == "RUNNING")
        )

    def start_all_active(self, trigger: str = "schedule") -> int:
        """Start and queue a run for every ACTIVE connection that is not already syncing."""
        with self.session_factory() as session:
            connection_ids = session.scalars(
                select(Connection.id).where(Connection.status == "ACTIVE").order_by(Connection.id)
            ).all()
        started = 0
        for connection_id in connection_ids:
            try:
                _, created = self.start(connection_id, trigger, enqueue=True)
            except NotFound:
                continue  # deleted meanwhile
            started += created
        log.info("%s: started %d of %d active connections", trigger, started, len(connection_ids))
        return started

    def _try_start(self, connection_id: str, trigger: str, full: bool, enqueue: bool) -> tuple[SyncRun, bool]:
        now = utcnow()
        with transaction(self.session_factory) as session:
            connection = session.get(Connection, connection_id)
            if connection is None:
                raise NotFound(f"connection {connection_id} not found")
            running = self._running(session, connection_id)
            if running is not None:
                if running.heartbeat_at > now - timedelta(seconds=self.options.stale_after_seconds):
                    return running, False
                running.status = "FAILED"
                running.finished_at = now
                running.error = {
                    "kind": "Abandoned",
                    "message": (
                        f"the process running this sync stopped; no progress since {running.heartbeat_at.isoformat()}"
                    ),
                    "hint": "Sync now to run it again",
                }
                session.flush()
            modified_since = None if full else connection.sync_watermark
            run = SyncRun(
                connection_id=connection.id,
                tenant_id=connection.tenant_id,
                environment_id=connection.environment_id,
                trigger=trigger,
                status="RUNNING",
                full=modified_since is None,
                modified_since=modified_since,
                started_at=now,
                heartbeat_at=now,
                stats={e: asdict(EntityStats()) for e in ENTITIES},
                warnings=[],
            )
            session.add(run)
            session.flush()
            if enqueue:
                if self.queue is None:
                    raise RuntimeError("this sync engine has no job queue")
                # The lock keeps two jobs of one connection from running at once on any worker.
                self.queue.enqueue(session, TASK_SYNC, {"run_id": run.id}, lock=f"connection:{connection.id}")
            return run, True

    def run(
        self, connection_id: str, trigger: str = "manual", full: bool = False, progress: SyncProgress | None = None
    ) -> SyncRun:
        """Start and execute a run in the foreground; returns the finished (or the running) run."""
        run, started = self.start(connection_id, trigger, full)
        if not started:
            return run
        return self.execute(run.id, progress)

    # Executing --------------------------------------------------------------------------

    def execute(self, run_id: str, progress: SyncProgress | None = None) -> SyncRun:
        """Run every stage of a started run and record its outcome."""
        with self.session_factory() as session:
            run = session.get(SyncRun, run_id)
            if run is None:
                raise NotFound(f"sync run {run_id} not found")
            if run.status != "RUNNING":
                return run  # finished already, or taken over as abandoned
            connection = session.get(Connection, run.connection_id)
            assert connection is not None
        state = _RunState(run.id, run.tenant_id, run.environment_id, run.modified_since)
        connector = self.connector_factory(connection)
        try:
            for entity in ENTITIES:
                self._sync_entity(entity, connector, state, progress)
        except ConnectorError as exc:
            log.warning("sync %s failed: %s", run_id, exc)
            return self._finish(state, run.connection_id, started_at=run.started_at, error=exc)
        except Exception as exc:
            log.exception("sync %s failed unexpectedly", run_id)
            return self._finish(state, run.connection_id, started_at=run.started_at, error=exc)
        finally:
            connector.close()
        return self._finish(state, run.connection_id, started_at=run.started_at, error=None)

    def _fetch(self, connector: ErpConnector, entity: Entity, page: int, modified_since: datetime | None) -> Page[Any]:
        limit = self.options.page_size
        if entity == "debtors":
            return connector.list_debtors(page, limit, modified_since)
        if entity == "invoices":
            return connector.list_invoices(page, limit, modified_since)
        return connector.list_payments(page, limit, modified_since)

    def _sync_entity(
        self, entity: Entity, connector: ErpConnector, state: _RunState, progress: SyncProgress | None
    ) -> None:
        endpoint = f"/{entity}/list"
        stats = state.stats[entity]
        previous_signature: str | None = None
        analyze_at = FIRST_ANALYZE_AT
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fetch-{entity}") as pool:
            pending: Future[Page[Any]] = pool.submit(self._fetch, connector, entity, 1, state.modified_since)
            while True:
                page = pending.result()
                signature = _page_signature(entity, page.items)
                self._guard(endpoint, page, signature, previous_signature)
                if page.has_more:
                    pending = pool.submit(self._fetch, connector, entity, page.number + 1, state.modified_since)
                previous_signature = signature
                self._load(entity, page, state)
                if stats.created >= analyze_at:
                    self._refresh_statistics(entity)
                    analyze_at = stats.created * 2
                if progress is not None:
                    progress(entity, stats)
                if not page.has_more:
                    return

    def _guard(self, endpoint: str, page: Page[Any], signature: str | None, previous_signature: str | None) -> None:
        number = page.number
        if len(page.items) > self.options.page_size:
            raise ContractViolation(
                f"returned {len(page.items)} records but limit was {self.options.page_size}",
                endpoint=endpoint,
                page=number,
            )
        if not page.items and page.has_more:
            raise PagingError("empty page with hasMore: true; paging would never end", endpoint=endpoint, page=number)
        if signature is not None and signature == previous_signature:
            raise PagingError(
                f"page {page.number} repeats page {page.number - 1}; the page parameter is ignored",
                endpoint=endpoint,
                page=number,
            )
        if page.has_more and page.number >= self.options.max_pages:
            raise PagingError(
                f"more than {self.options.max_pages} pages (ARSYNC_SYNC_MAX_PAGES); hasMore never became false",
                endpoint=endpoint,
                page=number,
            )

    def _load(self, entity: Entity, page: Page[Any], state: _RunState) -> None:
        now = utcnow()
        with transaction(self.session_factory) as session:
            if session.get_bind().dialect.name == "postgresql":
                # Page commits need not wait for the WAL flush: WAL is replayed in order, so once
                # the final (synchronous) commit that moves the watermark is durable, every page
                # before it is too. A crash before that loses pages that the next run refetches.
                session.execute(text("SET LOCAL synchronous_commit = off"))
            loader = LedgerLoader(session, state.tenant_id, state.environment_id, now)
            if entity == "debtors":
                result = loader.load_debtors(page.items)
            elif entity == "invoices":
                result = loader.load_invoices(page.items)
            else:
                result = loader.load_payments(page.items)
                loader.remove_payments(page.removed, result)
            state.stats[entity].add(result, len(page.items))
            if result.debtors_inferred:
                state.stats["debtors"].inferred += result.debtors_inferred
                state.stats["debtors"].created += result.debtors_inferred
            room = self.options.max_warnings - len(state.warnings)
            state.warnings.extend(result.warnings[: max(room, 0)])
            state.warnings_omitted += max(len(result.warnings) - max(room, 0), 0)
            session.execute(
                update(SyncRun)
                .where(SyncRun.id == state.run_id)
                .values(
                    stats=state.stats_json(),
                    warnings=list(state.warnings),
                    warnings_omitted=state.warnings_omitted,
                    heartbeat_at=now,
                )
            )

    def _refresh_statistics(self, entity: Entity) -> None:
        """ANALYZE the tables a large sync is filling (PostgreSQL only).

        Without fresh statistics the planner believes a table that grew from empty during this
        run is still tiny. It then answers the per-page ERP-id lookups by walking the whole
        (tenant, environment) range, so the sync slows down quadratically. Autovacuum may be
        off or a minute behind, so the sync refreshes statistics each time a table has doubled.
        """
        with transaction(self.session_factory) as session:
            if session.get_bind().dialect.name != "postgresql":
                return
            for table in ENTITY_TABLES[entity]:
                session.execute(text(f'ANALYZE "{table}"'))

    def _finish(
        self, state: _RunState, connection_id: str, *, started_at: datetime, error: BaseException | None
    ) -> SyncRun:
        now = utcnow()
        with transaction(self.session_factory) as session:
            run = session.get(SyncRun, state.run_id)
            connection = session.get(Connection, connection_id)
            assert run is not None and connection is not None
            run.stats = state.stats_json()
            run.warnings = list(state.warnings)
            run.warnings_omitted = state.warnings_omitted
            run.finished_at = now
            run.heartbeat_at = now
            if error is None:
                run.status = "SUCCEEDED"
                connection.sync_watermark = started_at
                if connection.status != "ACTIVE":
                    connection.status, connection.status_changed_at = "ACTIVE", now
                connection.status_reason = None
                connection.last_error = None
            elif isinstance(error, ConnectorError):
                run.status = "FAILED"
                run.error = error.as_dict() | {"at": now.isoformat()}
                if error.connection_status is not None:
                    connection.status, connection.status_changed_at = error.connection_status, now
                    connection.status_reason = str(error)
                connection.last_error = run.error
            else:
                run.status = "FAILED"
                run.error = {
                    "kind": "InternalError",
                    "message": f"{type(error).__name__}: {str(error)[:500]}",
                    "hint": "this is an arsync error, not the middleware's; see the server log",
                    "at": now.isoformat(),
                }
            connection.updated_at = now
            session.flush()
            return run


def run_as_dict(run: SyncRun) -> dict[str, Any]:
    """The sync-run record as shown by the CLI and the API."""
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    return {
        "id": run.id,
        "connectionId": run.connection_id,
        "trigger": run.trigger,
        "status": run.status,
        "full": run.full,
        "modifiedSince": contract.format_datetime(run.modified_since) if run.modified_since else None,
        "startedAt": run.started_at.isoformat(),
        "finishedAt": run.finished_at.isoformat() if run.finished_at else None,
        "durationSeconds": round(duration, 3) if duration is not None else None,
        "counts": run.stats,
        "warnings": run.warnings,
        "warningsOmitted": run.warnings_omitted,
        "error": run.error,
    }
