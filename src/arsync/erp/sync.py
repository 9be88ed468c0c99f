"""The inbound sync: debtors, then invoices, then payments, page by page, into the ledger.

A run goes through three stages per entity, dlt-style: *extract* (the connector fetches and
validates a page), *guard* (paging must advance) and *load* (:class:`LedgerLoader` upserts the
page). Each page commits on its own, with the run's counts and heartbeat, so committed pages
survive a failure and a re-run is idempotent. The next page is fetched on a helper thread
while the current one is written, and at most two pages are ever held in memory.

The watermark (``Connection.sync_watermark``) is the start time of the last successful run.
It moves only in the final transaction of a run that succeeded. Incremental runs ask for
changes since the watermark less a lookback, so changes stamped just before it by a clock
behind ours are fetched again rather than lost.

A running run beats a heartbeat from a thread and records its process (``host:pid``); a run
whose process has ended, or whose heartbeat stopped, is taken over by the next start.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from arsync import logs, metrics
from arsync.db import Heartbeat, runner_is_dead, this_runner, transaction, update_if, utcnow
from arsync.erp.alerts import announce_run
from arsync.erp.failures import pause_if_failing
from arsync.erp.loader import ERP_IDS, LedgerLoader, PageResult, PreparedPage, is_duplicate_key, prepare
from arsync.erp.models import Connection, SyncRun
from arsync.erp.port import ENTITIES, Entity, ErpConnector, Page
from arsync.erp.reconcile import Reconciliation
from arsync.erp.runs import internal_error_message
from arsync.erp.service import get_connection
from arsync.errors import ConnectorError, ContractViolation, NotFound, PagingError, TransientError
from arsync.jobs.queue import JobQueue
from arsync.notify.flows import Notifier
from arsync.schedule import latest_slot
from arsync.tenancy.scope import Scope

log = logging.getLogger(__name__)

# Job names are stored with queued jobs: never rename one.
TASK_SYNC = "arsync.sync"
TASK_SYNC_RETRY = "arsync.sync_retry"
TASK_SCHEDULED_SYNC = "arsync.scheduled_sync"
TASK_OWN_SCHEDULES = "arsync.own_schedules"
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
    applied_late: int = 0  # payments only: parked in an earlier run, applied when their invoice came

    def add(self, page: PageResult, records: int) -> None:
        self.pages += 1
        self.records += records
        self.created += page.created
        self.updated += page.updated
        self.unchanged += page.unchanged
        self.skipped += page.skipped
        self.applied_late += page.applied_late


class SyncProgress(Protocol):
    def __call__(self, entity: Entity, stats: EntityStats) -> None: ...


@dataclass(frozen=True)
class SyncOptions:
    page_size: int = 1000
    max_pages: int = 100_000
    stale_after_seconds: int = 30
    heartbeat_seconds: float = 5.0
    lookback_seconds: int = 300
    retry_attempts: int = 3
    retry_backoff_seconds: float = 60.0
    max_warnings: int = 100
    pause_after_failures: int = 5  # scheduled slots failed in a row (erp.failures); 0: never


@dataclass
class _RunState:
    run_id: str
    tenant_id: str
    environment_id: str
    modified_since: datetime | None
    # Payments parked by earlier runs wait for their invoices; without any, invoice pages need
    # not look for them (payments are parked only after this run's invoice stage).
    parked_waiting: bool = False
    # Per entity: nothing of it from an ERP was in the scope when the run started (see
    # LedgerLoader.first_import); cleared at the first duplicate key.
    first_import: dict[Entity, bool] = field(default_factory=lambda: dict.fromkeys(ENTITIES, False))
    stats: dict[Entity, EntityStats] = field(default_factory=lambda: {e: EntityStats() for e in ENTITIES})
    warnings: list[dict[str, Any]] = field(default_factory=list)
    warnings_omitted: int = 0
    # ANALYZE a table when the run has created this many of its rows (then twice as many).
    analyze_at: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLE_GROWTH, FIRST_ANALYZE_AT))
    reconciliation: Reconciliation | None = None  # a reconciliation run's ERP ids and totals
    connection_status: str = "ACTIVE"  # when the run began: its end announces a change (erp.alerts)

    def stats_json(self) -> dict[str, Any]:
        return {entity: asdict(stats) for entity, stats in self.stats.items()}


# The tables a sync fills, each with the entity whose created count is its growth (customers
# count the debtors inferred from invoices too; lines grow with their invoices). Each is refreshed
# with ANALYZE as it grows (see _refresh_statistics), and only then: analyzing customers at every
# doubling of invoices as well cost a sync nine ANALYZEs that changed nothing.
TABLE_GROWTH: dict[str, Entity] = {
    "customers": "debtors",
    "invoices": "invoices",
    "invoice_lines": "invoices",
    "payments": "payments",
}
FIRST_ANALYZE_AT = 1000
SCHEDULED_STATUSES = ("ACTIVE", "FAILED")


def _page_signature(entity: Entity, items: Sequence[Any]) -> str | None:
    """A digest of the page's ERP ids, to spot a middleware serving the same page again."""
    if not items:
        return None
    attribute = ERP_IDS[entity].field
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
        notifier: Notifier | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.connector_factory = connector_factory
        self.options = options or SyncOptions()
        self.queue = queue
        self.notifier = notifier

    # Starting ---------------------------------------------------------------------------

    def start(
        self,
        connection_id: str,
        trigger: str = "manual",
        full: bool = False,
        *,
        enqueue: bool = False,
        attempt: int = 1,
        scope: Scope | None = None,
        kind: str = "sync",
    ) -> tuple[SyncRun, bool]:
        """Create a RUNNING run, or return the one already running (``started`` is False).

        A caller acting for a tenant passes its ``scope``: a connection outside it is not found.

        With ``enqueue`` the run's job is queued in the same transaction, so a run never exists
        without the job that executes it.
        """
        for _ in range(3):
            try:
                return self._try_start(
                    connection_id, trigger, full or kind == "reconcile", enqueue, attempt, scope, kind
                )
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

    def start_scheduled(self, trigger: str = "schedule") -> int:
        """Start and queue a run for every connection due at a scheduled slot.

        That is every ACTIVE connection and every FAILED one: a transient outage must heal by
        itself at the next slot, not wait for someone to press Sync now. A connection that needs
        reauthorising (or is still PENDING its first health check) waits for a person.
        """
        with self.session_factory() as session:
            connection_ids = session.scalars(
                select(Connection.id)
                .where(Connection.status.in_(SCHEDULED_STATUSES), Connection.sync_cron.is_(None))
                .order_by(Connection.id)
            ).all()
        return self.start_each(connection_ids, trigger)

    def start_own_schedules(self, now: datetime | None = None) -> int:
        """Start every connection with a schedule of its own whose latest slot has passed since the
        one it was last started for (or since it was made); the job of TASK_OWN_SCHEDULES, every
        minute. Claiming the slot is conditional, so of several workers one starts it."""
        now = now or utcnow()
        with self.session_factory() as session:
            own = session.execute(
                select(Connection.id, Connection.sync_cron, Connection.schedule_slot_at, Connection.created_at)
                .where(Connection.status.in_(SCHEDULED_STATUSES), Connection.sync_cron.is_not(None))
                .order_by(Connection.id)
            ).all()
        due = []
        for connection_id, cron, last_slot, created_at in own:
            slot = latest_slot(str(cron), now)
            if slot <= (last_slot or created_at):
                continue
            with transaction(self.session_factory) as session:
                connection = session.get(Connection, connection_id)
                not_yet = or_(Connection.schedule_slot_at.is_(None), Connection.schedule_slot_at < slot)
                if connection is not None and update_if(session, connection, not_yet, schedule_slot_at=slot):
                    due.append(connection_id)
        return self.start_each(due, "schedule")

    def start_each(self, connection_ids: Sequence[str], trigger: str, kind: str = "sync") -> int:
        started = 0
        for connection_id in connection_ids:
            try:
                _, created = self.start(connection_id, trigger, enqueue=True, kind=kind)
            except NotFound:
                continue  # deleted meanwhile
            started += created
        log.info("%s: started %d %s runs of %d due connections", trigger, started, kind, len(connection_ids))
        return started

    def retry(self, connection_id: str, attempt: int) -> SyncRun | None:
        """Run a scheduled sync that failed in a transient way again (the job of TASK_SYNC_RETRY).

        Skipped when the connection is no longer FAILED: someone synced it meanwhile, or it now
        needs reauthorising.
        """
        with self.session_factory() as session:
            connection = session.get(Connection, connection_id)
            if connection is None or connection.status != "FAILED":
                return None
        try:
            run, started = self.start(connection_id, "retry", attempt=attempt)
        except NotFound:
            return None
        return self.execute(run.id) if started else None

    def _try_start(
        self, connection_id: str, trigger: str, full: bool, enqueue: bool, attempt: int, scope: Scope | None,
        kind: str,
    ) -> tuple[SyncRun, bool]:  # fmt: skip
        now = utcnow()
        with transaction(self.session_factory) as session:
            connection = get_connection(session, connection_id, scope)
            running = self._running(session, connection_id)
            if running is not None:
                why = self._abandoned(running, now)
                if why is None:
                    return running, False
                running.status = "FAILED"
                running.finished_at = now
                running.error = {"kind": "Abandoned", "message": why, "hint": "Sync now to run it again"}
                session.flush()
            modified_since = None
            if not full and connection.sync_watermark is not None:
                # The overlap: an ERP clock behind ours, or a middleware that filters with a
                # strict ">" on second-rounded stamps, would otherwise hide changes stamped just
                # before the watermark for good. Records seen again are matched by ERP id and
                # content hash, so they cost a read and count as unchanged.
                modified_since = connection.sync_watermark - timedelta(seconds=self.options.lookback_seconds)
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
                attempt=attempt,
                kind=kind,
            )
            session.add(run)
            session.flush()
            if enqueue:
                if self.queue is None:
                    raise RuntimeError("this sync engine has no job queue")
                # The lock keeps two jobs of one connection from running at once on any worker.
                self.queue.enqueue(session, TASK_SYNC, {"run_id": run.id}, lock=f"connection:{connection.id}")
            return run, True

    def _abandoned(self, run: SyncRun, now: datetime) -> str | None:
        """Why a RUNNING run is dead and may be taken over, or None while it may be alive."""
        if runner_is_dead(run.runner):
            return f"the process running this sync ({run.runner}) has ended"
        # A run not yet picked up by a worker has no heartbeat of its own; it waits in the queue.
        silence = self.options.stale_after_seconds * (1 if run.runner else 20)
        if run.heartbeat_at <= now - timedelta(seconds=silence):
            return f"the process running this sync stopped; no progress since {run.heartbeat_at.isoformat()}"
        return None

    def run(
        self, connection_id: str, trigger: str = "manual", full: bool = False, progress: SyncProgress | None = None,
        kind: str = "sync",
    ) -> SyncRun:  # fmt: skip
        """Start and execute a run in the foreground; returns the finished (or the running) run."""
        run, started = self.start(connection_id, trigger, full, kind=kind)
        if not started:
            return run
        return self.execute(run.id, progress)

    # Executing --------------------------------------------------------------------------

    def execute(self, run_id: str, progress: SyncProgress | None = None) -> SyncRun:
        """Run every stage of a started run and record its outcome."""
        with logs.bound(run_id=run_id):
            return self._execute(run_id, progress)

    def _execute(self, run_id: str, progress: SyncProgress | None) -> SyncRun:
        with transaction(self.session_factory) as session:
            run = session.get(SyncRun, run_id)
            if run is None:
                raise NotFound(f"sync run {run_id} not found")
            if run.status != "RUNNING":
                return run  # finished already, or taken over as abandoned
            run.runner = this_runner()
            run.heartbeat_at = utcnow()
            connection = session.get(Connection, run.connection_id)
            assert connection is not None
            loader = LedgerLoader(session, run.tenant_id, run.environment_id, utcnow())
            parked_waiting = loader.has_parked_payments()
            first_import = {entity: loader.first_import(entity) for entity in ENTITIES}
            reconciliation = Reconciliation.begin(session, run) if run.kind == "reconcile" else None
            status_at_start = connection.status
        state = _RunState(run.id, run.tenant_id, run.environment_id, run.modified_since, parked_waiting, first_import)
        state.reconciliation = reconciliation
        state.connection_status = status_at_start
        connector = self.connector_factory(connection)
        heartbeat = Heartbeat(self.session_factory, SyncRun, run.id, self.options.heartbeat_seconds)
        error: BaseException | None = None
        try:
            for entity in ENTITIES:
                self._sync_entity(entity, connector, state, progress)
        except ConnectorError as exc:
            log.warning("sync %s failed: %s", run_id, exc)
            error = exc
        except Exception as exc:
            log.exception("sync %s failed unexpectedly", run_id)
            error = exc
        finally:
            heartbeat.stop()
            connector.close()
        return self._finish(state, run, error=error)

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
        """Pages go through three stages at once, one page in each: fetched (and validated) in
        one thread, prepared (deduplicated, hashed) in this one, written in a third. Python's lock
        lets one stage compute at a time, but while the database works on a page's write the
        next page is prepared, and while the ERP answers the one after is on its way. The writes
        keep the pages' order, and each is waited for before the next is handed over, so at most
        three pages are in memory and an error in any stage stops the run at its own page."""
        endpoint = f"/{entity}/list"
        stats = state.stats[entity]
        previous_signature: str | None = None
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fetch-{entity}") as fetcher,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"write-{entity}") as writer,
        ):
            pending: Future[Page[Any]] = fetcher.submit(self._fetch, connector, entity, 1, state.modified_since)
            writing: Future[None] | None = None
            while True:
                page = pending.result()
                signature = _page_signature(entity, page.items)
                self._guard(endpoint, page, signature, previous_signature)
                if page.has_more:
                    pending = fetcher.submit(self._fetch, connector, entity, page.number + 1, state.modified_since)
                previous_signature = signature
                prepared = prepare(entity, page.items)
                if writing is not None:
                    writing.result()
                    if progress is not None:
                        progress(entity, stats)
                writing = writer.submit(self._write, entity, page, prepared, state)
                if not page.has_more:
                    writing.result()
                    if progress is not None:
                        progress(entity, stats)
                    return

    def _write(self, entity: Entity, page: Page[Any], prepared: PreparedPage[Any], state: _RunState) -> None:
        self._load(entity, page, prepared, state)
        grown = [table for table, by in TABLE_GROWTH.items() if state.stats[by].created >= state.analyze_at[table]]
        if grown:
            self._refresh_statistics(grown)
            for table in grown:
                state.analyze_at[table] = state.stats[TABLE_GROWTH[table]].created * 2

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

    def _load(self, entity: Entity, page: Page[Any], prepared: PreparedPage[Any], state: _RunState) -> None:
        if state.first_import[entity]:
            try:
                self._load_page(entity, page, prepared, state, assume_new=True)
                return
            except Exception as error:  # the driver raises its own errors from COPY
                if not is_duplicate_key(error):
                    raise
                log.info("sync %s: %s repeat an ERP id; looking each page's ids up from now on", state.run_id, entity)
                state.first_import[entity] = False
        self._load_page(entity, page, prepared, state, assume_new=False)

    def _load_page(
        self, entity: Entity, page: Page[Any], prepared: PreparedPage[Any], state: _RunState, *, assume_new: bool
    ) -> None:
        now = utcnow()
        with transaction(self.session_factory) as session:
            if session.get_bind().dialect.name == "postgresql":
                # Page commits need not wait for the WAL flush: WAL is replayed in order, so once
                # the final (synchronous) commit that moves the watermark is durable, every page
                # before it is too. A crash before that loses pages that the next run refetches.
                session.execute(text("SET LOCAL synchronous_commit = off"))
            loader = LedgerLoader(session, state.tenant_id, state.environment_id, now)
            if entity == "debtors":
                result = loader.load_debtors(prepared, assume_new=assume_new)
            elif entity == "invoices":
                result = loader.load_invoices(prepared, assume_new=assume_new)
                if state.parked_waiting:
                    late = loader.apply_parked_payments([invoice.erp_invoice_id for invoice in page.items])
                    state.stats["payments"].created += late.created
                    state.stats["payments"].applied_late += late.applied_late
            else:
                result = loader.load_payments(prepared, assume_new=assume_new)
                loader.remove_payments(page.removed, result)
            state.stats[entity].add(result, len(page.items))
            if state.reconciliation is not None:
                state.reconciliation.remember(session, entity, page.items)
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

    def _refresh_statistics(self, tables: Sequence[str]) -> None:
        """ANALYZE the tables a large sync is filling (PostgreSQL only). Without fresh statistics
        the planner takes a table that grew from empty during this run for tiny, and answers the
        per-page ERP-id lookups by walking the whole scope: quadratic. Autovacuum may be off or
        behind, so the sync refreshes statistics each time a table has doubled."""
        with transaction(self.session_factory) as session:
            if session.get_bind().dialect.name != "postgresql":
                return
            for table in tables:
                session.execute(text(f'ANALYZE "{table}"'))

    def _finish(self, state: _RunState, started: SyncRun, *, error: BaseException | None) -> SyncRun:
        now = utcnow()
        with transaction(self.session_factory) as session:
            run = session.get(SyncRun, state.run_id)
            connection = session.get(Connection, started.connection_id)
            if run is None or connection is None:
                # The connection was removed while it synced (its runs go with it).
                log.info("sync %s ended after its connection was removed", state.run_id)
                return started
            if run.status != "RUNNING":
                # Taken over as abandoned while this process was stalled: the other run owns the
                # watermark now, and this one's pages are already in (they are idempotent).
                log.warning("sync %s finished after it was taken over; its outcome is not recorded", run.id)
                return run
            run.stats = state.stats_json()
            run.warnings = list(state.warnings)
            run.warnings_omitted = state.warnings_omitted
            run.finished_at = now
            run.heartbeat_at = now
            if state.reconciliation is not None:
                if error is None:
                    run.report = state.reconciliation.conclude(session, now, run.stats)
                state.reconciliation.forget(session)
            if error is None:
                run.status = "SUCCEEDED"
                connection.sync_watermark = started.started_at
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
                if not self._schedule_retry(session, run, error):
                    pause_if_failing(session, connection, run, self.options.pause_after_failures)
            else:
                run.status = "FAILED"
                run.error = {
                    "kind": "InternalError",
                    "message": internal_error_message(error),
                    "hint": "this is an arsync error, not the middleware's; see the server log",
                    "at": now.isoformat(),
                }
            connection.updated_at = now
            session.flush()
            if self.notifier is not None:
                announce_run(self.notifier, session, connection, run, state.connection_status)
            finished = run
        metrics.record_sync(
            finished.status, finished.trigger, (now - finished.started_at).total_seconds(), finished.stats or {}
        )
        return finished

    def _schedule_retry(self, session: Session, run: SyncRun, error: ConnectorError) -> bool:
        """Queue the next try of a scheduled run that failed in a transient way, with doubling delays."""
        if run.trigger not in {"schedule", "retry"} or not isinstance(error, TransientError):
            return False
        if self.queue is None or run.attempt > self.options.retry_attempts:
            return False
        delay = self.options.retry_backoff_seconds * 2 ** (run.attempt - 1)
        run_at = utcnow() + timedelta(seconds=delay)
        self.queue.enqueue(
            session, TASK_SYNC_RETRY, {"connection_id": run.connection_id, "attempt": run.attempt + 1}, run_at=run_at
        )
        assert run.error is not None
        run.error = run.error | {"hint": f"tried again by itself at {run_at:%H:%M:%S} UTC (attempt {run.attempt + 1})"}
        return True
