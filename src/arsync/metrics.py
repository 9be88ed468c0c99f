"""What ``GET /metrics`` reports, in Prometheus's text format (prometheus-client).

Each process counts what it does itself: a sync or a push in ``arsync worker`` is counted there.
With several processes, set ``PROMETHEUS_MULTIPROC_DIR`` to one empty directory for all of them
(prometheus-client's multiprocess mode): each process writes its counters there and the server's
``/metrics`` adds them up. Labels hold kinds and outcomes only, never an id, a name or an address.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

SYNC_RUNS = Counter("arsync_sync_runs", "Sync runs finished, by outcome and what started them.", ["status", "trigger"])
SYNC_RECORDS = Counter(
    "arsync_sync_records", "Records a finished sync run read, by entity and outcome.", ["entity", "outcome"]
)
SYNC_DURATION = Histogram(
    "arsync_sync_duration_seconds",
    "How long sync runs took, start to finish.",
    ["status"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, float("inf")),
)
PUSHES = Counter("arsync_pushes", "Push attempts that ended, by kind and the status they left.", ["kind", "status"])
PUSH_LATENCY = Histogram(
    "arsync_push_latency_seconds",
    "From a push being queued to its record being in the ERP.",
    ["kind"],
    buckets=(0.1, 0.5, 1, 2, 5, 15, 60, 300, 3600, float("inf")),
)
WEBHOOKS_IN = Counter("arsync_webhook_deliveries_received", "Inbound webhook deliveries, by outcome.", ["outcome"])
WEBHOOKS_OUT = Counter(
    "arsync_notification_attempts",
    "Outbound notification attempts, by kind (webhook, email) and outcome.",
    ["kind", "outcome"],
)
ERP_CALLS = Counter("arsync_erp_calls", "HTTP calls to ERPs, by ERP kind and answer.", ["erp", "outcome"])
ERP_RATE_LIMITED = Counter("arsync_erp_rate_limited", "ERP answers of 429 (Too Many Requests), by ERP kind.", ["erp"])

OWN = (
    SYNC_RUNS, SYNC_RECORDS, SYNC_DURATION, PUSHES, PUSH_LATENCY, WEBHOOKS_IN, WEBHOOKS_OUT, ERP_CALLS,
    ERP_RATE_LIMITED,
)  # fmt: skip
SYNC_OUTCOMES = ("created", "updated", "unchanged", "skipped")


def record_sync(status: str, trigger: str, seconds: float, stats: dict[str, dict[str, Any]]) -> None:
    SYNC_RUNS.labels(status, trigger).inc()
    SYNC_DURATION.labels(status).observe(seconds)
    for entity, counts in stats.items():
        for outcome in SYNC_OUTCOMES:
            if counts.get(outcome):
                SYNC_RECORDS.labels(entity, outcome).inc(counts[outcome])


def record_push(kind: str, status: str, queued_at: datetime, finished_at: datetime | None) -> None:
    PUSHES.labels(kind, status).inc()
    if status == "SUCCEEDED" and finished_at is not None:
        PUSH_LATENCY.labels(kind).observe(max((finished_at - queued_at).total_seconds(), 0.0))


def erp_response_hook(erp: str) -> Callable[[httpx.Response], None]:
    """For ``httpx.Client(event_hooks={"response": [...]})``: counts each answer by status class."""

    def count(response: httpx.Response) -> None:
        ERP_CALLS.labels(erp, f"{response.status_code // 100}xx").inc()
        if response.status_code == 429:
            ERP_RATE_LIMITED.labels(erp).inc()

    return count


def count_erp_failure(erp: str, kind: str) -> None:
    """A call that got no answer: ``kind`` is ``timeout`` or ``transport``."""
    ERP_CALLS.labels(erp, kind).inc()


# Due jobs per queue, and the oldest one's wait since it was deferred or became due.
QUEUE_QUERY = text("""
    SELECT j.queue_name, count(*), EXTRACT(EPOCH FROM now() - min(greatest(j.scheduled_at, e.at)))
    FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'deferred'
    WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
    GROUP BY j.queue_name
""")


class JobQueueCollector(Collector):
    """Job queue depth and the oldest waiting job's age, read from Procrastinate's table when
    scraped (PostgreSQL; the embedded SQLite queue lives in the server's memory)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("arsync_job_queue_depth", "Jobs due to run and waiting, by queue.", labels=["queue"])
        age = GaugeMetricFamily(
            "arsync_job_queue_oldest_age_seconds", "How long the oldest job due to run has waited.", labels=["queue"]
        )
        if self.engine.dialect.name == "postgresql":
            try:
                with self.engine.connect() as connection:
                    rows = connection.execute(QUEUE_QUERY).all()
            except SQLAlchemyError:
                rows = []  # the readiness probe reports an unreachable database
            for queue, count, oldest in rows:
                depth.add_metric([queue], count)
                age.add_metric([queue], float(oldest or 0))
        yield depth
        yield age


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def render(engine: Engine) -> tuple[bytes, str]:
    """The text exposition of every process's counters (or this one's) and the queue's gauges."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for collector in OWN:
            registry.register(collector)
    registry.register(JobQueueCollector(engine))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def worker_exited(pid: int | None = None) -> None:
    """Multiprocess mode keeps a dead process's counters but drops its live gauges."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]
