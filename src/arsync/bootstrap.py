"""Builds the engine, vault, connectors and services from settings: the one wiring place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from arsync import migrate, models
from arsync.config import Settings
from arsync.db import make_engine, make_read_session_factory, make_session_factory
from arsync.erp.debtors import DebtorFlows
from arsync.erp.flows import ConnectionFlows
from arsync.erp.models import Connection
from arsync.erp.port import ErpConnector
from arsync.erp.push import PushFlows, PushOptions
from arsync.erp.rest import RestConnector, RestOptions
from arsync.erp.sync import SyncEngine, SyncOptions
from arsync.erp.tasks import erp_tasks
from arsync.http_retry import HttpRetryOptions
from arsync.jobs.queue import InProcessQueue, JobQueue, ProcrastinateQueue
from arsync.jobs.registry import Task
from arsync.jobs.runner import InProcessRunner
from arsync.nomod.flows import NomodFlows
from arsync.nomod.service import RetryPolicy
from arsync.nomod.tasks import nomod_tasks
from arsync.nomod.webhooks import PaidWebhooks
from arsync.notify.email import SmtpSettings
from arsync.notify.flows import Notifier, NotifyOptions
from arsync.notify.tasks import notify_tasks
from arsync.outbound import OutboundPolicy
from arsync.vault import Vault
from arsync.xero.connector import XeroConnector, XeroOptions
from arsync.xero.flows import XeroConnections
from arsync.xero.limits import CallBudgets
from arsync.xero.oauth import XeroApp, XeroOAuth
from arsync.xero.tokens import XeroTokens


@dataclass
class Container:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    vault: Vault
    read_session_factory: sessionmaker[Session] = field(init=False)
    sync: SyncEngine = field(init=False)
    connections: ConnectionFlows = field(init=False)
    runner: InProcessRunner = field(init=False)
    queue: JobQueue = field(init=False)
    pushes: PushFlows = field(init=False)
    nomod: NomodFlows = field(init=False)
    nomod_webhooks: PaidWebhooks = field(init=False)
    xero: XeroConnections = field(init=False)
    tasks: list[Task] = field(init=False)
    outbound: OutboundPolicy = field(init=False)
    xero_budgets: CallBudgets = field(init=False)
    notifier: Notifier = field(init=False)

    def __post_init__(self) -> None:
        self.read_session_factory = make_read_session_factory(self.engine)
        self.outbound = OutboundPolicy(allow_private=self.settings.outbound_allow_private)
        self.xero_budgets = CallBudgets()
        self.runner = InProcessRunner()
        self.queue = (
            ProcrastinateQueue() if self.settings.is_postgresql else InProcessQueue(self.runner, self.session_factory)
        )
        self.notifier = Notifier(
            self.session_factory,
            self.vault,
            self.queue,
            self.outbound,
            NotifyOptions(
                max_attempts=self.settings.notify_max_attempts,
                backoff_seconds=self.settings.notify_backoff_seconds,
                timeout_seconds=self.settings.notify_timeout_seconds,
            ),
            smtp=self.smtp(),
        )
        self.sync = SyncEngine(
            self.session_factory,
            self.connector_for,
            SyncOptions(
                page_size=self.settings.sync_page_size,
                max_pages=self.settings.sync_max_pages,
                stale_after_seconds=self.settings.sync_stale_after_seconds,
                heartbeat_seconds=self.settings.sync_heartbeat_seconds,
                lookback_seconds=self.settings.sync_lookback_seconds,
                retry_attempts=self.settings.sync_retry_attempts,
                retry_backoff_seconds=self.settings.sync_retry_backoff_seconds,
                pause_after_failures=self.settings.sync_pause_after_failures,
            ),
            queue=self.queue,
            notifier=self.notifier,
        )
        self.pushes = PushFlows(
            self.session_factory,
            self.connector_for,
            self.queue,
            PushOptions(
                max_attempts=self.settings.push_max_attempts,
                backoff_seconds=self.settings.push_backoff_seconds,
                lookback_seconds=self.settings.sync_lookback_seconds,
                failpoints=self.settings.failpoint_names,
            ),
            notifier=self.notifier,
        )
        self.nomod = NomodFlows(
            self.session_factory,
            self.vault,
            self.http_retry(),
            queue=self.queue,
            retry=RetryPolicy(self.settings.push_max_attempts, self.settings.push_backoff_seconds),
            default_base_url=self.settings.nomod_base_url,
            outbound=self.outbound,
        )
        self.nomod_webhooks = PaidWebhooks(self.nomod, self.pushes, self.notifier)
        self.tasks = [
            *erp_tasks(self.sync, self.pushes, self.settings.sync_cron, self.settings.reconcile_cron),
            *nomod_tasks(self.nomod),
            *notify_tasks(self.notifier),
        ]
        if isinstance(self.queue, InProcessQueue):
            for task in self.tasks:
                self.queue.register(task.name, task.run)
        self.connections = ConnectionFlows(self.session_factory, self.vault, self.connector_for, self.outbound)
        self.debtors = DebtorFlows(self.session_factory, self.connector_for, self.pushes)
        self.xero = XeroConnections(self.session_factory, self.vault, self.xero_oauth(), self.sync)

    def xero_oauth(self) -> XeroOAuth | None:
        s = self.settings
        if not s.xero_client_id or not s.xero_client_secret:
            return None
        return XeroOAuth(
            XeroApp(
                client_id=s.xero_client_id,
                client_secret=s.xero_client_secret,
                redirect_uri=s.xero_redirect_uri,
                authorize_url=s.xero_authorize_url,
                token_url=s.xero_token_url,
                revoke_url=s.xero_revoke_url,
                api_url=s.xero_api_url.rstrip("/"),
                scopes=" ".join(s.xero_scopes.split()),
                timeout_seconds=s.http_timeout_seconds,
            )
        )

    def smtp(self) -> SmtpSettings | None:
        s = self.settings
        if not s.smtp_host or not s.smtp_from:
            return None
        return SmtpSettings(
            host=s.smtp_host,
            port=s.smtp_port,
            sender=s.smtp_from,
            username=s.smtp_username,
            password=s.smtp_password,
            starttls=s.smtp_starttls,
            timeout_seconds=s.notify_timeout_seconds,
        )

    def http_retry(self) -> HttpRetryOptions:
        s = self.settings
        return HttpRetryOptions(
            timeout_seconds=s.http_timeout_seconds,
            max_attempts=s.http_max_attempts,
            backoff_seconds=s.http_backoff_seconds,
            max_retry_after_seconds=s.http_max_retry_after_seconds,
        )

    def rest_options(self) -> RestOptions:
        return RestOptions(**asdict(self.http_retry()), max_response_bytes=self.settings.sync_max_page_bytes)

    def connector_for(self, connection: Connection) -> ErpConnector:
        if connection.transport == "rest":
            return RestConnector(
                connection.base_url,
                self.vault.decrypt(connection.secret_encrypted),
                self.rest_options(),
                outbound=self.outbound,
            )
        if connection.provider == "xero" and connection.external_tenant_id:
            s = self.settings
            tokens = XeroTokens(self.session_factory, self.vault, self.xero.oauth, connection.id)
            budget = self.xero_budgets.for_organisation(
                f"{connection.base_url} {connection.external_tenant_id}",
                s.xero_calls_per_minute,
                s.xero_minute_seconds,
                s.xero_max_in_flight,
            )
            # Xero's own, longer Retry-After cap stays: only the shared timeout and attempts apply.
            retry = self.http_retry()
            options = XeroOptions(
                timeout_seconds=retry.timeout_seconds,
                max_attempts=retry.max_attempts,
                backoff_seconds=retry.backoff_seconds,
            )
            return XeroConnector(tokens, connection.external_tenant_id, connection.base_url, budget, options,
                                 sales_account_code=connection.sales_account_code, outbound=self.outbound)  # fmt: skip
        raise NotImplementedError(f"transport {connection.transport!r} ({connection.provider}) is not available")

    def close(self) -> None:
        if isinstance(self.queue, InProcessQueue):
            self.queue.close()
        self.runner.shutdown()
        self.engine.dispose()


def bootstrap(settings: Settings | None = None, *, upgrade_schema: bool = True) -> Container:
    """Everything arsync needs, built from ``settings`` (environment variables by default)."""
    assert models.Base.metadata.tables, "every model is registered before the first session"
    settings = settings or Settings()
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    if upgrade_schema:
        migrate.upgrade(engine)
    return Container(settings, engine, make_session_factory(engine), Vault(settings.resolved_secret_key))
