"""Engine, sessions, the declarative base and the column types shared by every model.

Both SQLite (embedded default) and PostgreSQL (production) are supported. Two column types
paper over SQLite's gaps so that the models behave the same on both:

* ``ExactDecimal`` keeps money exact. PostgreSQL stores ``NUMERIC``; SQLite has no exact
  decimal type (SQLAlchemy would store a binary float), so there the value is stored as a
  scaled 64-bit integer.
* ``UTCDateTime`` always returns timezone-aware UTC datetimes (SQLite drops the offset).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import BigInteger, DateTime, Engine, MetaData, Numeric, create_engine, event, func, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator, TypeEngine

from arsync.money import canonical

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


_id_random = random.Random()
os.register_at_fork(after_in_child=_id_random.seed)  # forked workers must not share a sequence


def utcnow() -> datetime:
    return datetime.now(UTC)


class _IdSequence:
    """Ids' 88 bits, 48 of milliseconds then 40 random, increasing within this process.

    Within one millisecond (a sync makes hundreds of ids in one) each id is the one before plus
    one, as ULID's monotonic mode does: random order inside the newest index page made B-tree
    splits leave primary-key pages half empty, where ordered inserts fill them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            drawn = (int(time.time() * 1000) << 40) | _id_random.getrandbits(40)
            self._last = max(drawn, self._last + 1)
            return self._last


_id_sequence = _IdSequence()


def new_id(prefix: str) -> str:
    """A prefixed id that sorts by creation time: 12 hex digits of milliseconds, then 10 more.

    Time-ordered ids keep primary-key index inserts append-only and make keyset pagination by
    id follow creation order. Ids are identifiers, not secrets (access is enforced by tenant
    scope), so a fast non-cryptographic generator is enough; ``os.urandom`` per id was a
    measurable share of a large sync.
    """
    return f"{prefix}_{_id_sequence.next():022x}"


class ExactDecimal(TypeDecorator[Decimal]):
    """An exact decimal with a fixed number of fractional digits on every database."""

    impl = Numeric
    cache_ok = True

    def __init__(self, scale: int = 4, precision: int = 18) -> None:
        super().__init__()
        self.scale = scale
        self.precision = precision
        self._factor = Decimal(10) ** scale

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"money must be a Decimal, got {type(value).__name__}")
        scaled = value * self._factor
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than {self.scale} decimal places")
        if abs(scaled) >= Decimal(10) ** self.precision:
            raise ValueError(f"{value} exceeds {self.precision - self.scale} integer digits")
        if dialect.name == "sqlite":
            return int(scaled)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return canonical(Decimal(int(value)) / self._factor)
        return canonical(Decimal(value))


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored in UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not accepted; use UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    # No server-side prepared statements: psycopg would otherwise prepare a statement after five
    # runs, and a generic plan made while a table was still empty (seq scan) is then kept while
    # the table grows to millions of rows.
    # No pre-ping: it costs a round trip on every checkout; stale connections are recycled instead.
    # orjson parses JSONB columns several times faster than the standard library.
    return create_engine(
        url,
        pool_size=20,
        max_overflow=30,
        pool_recycle=1800,
        connect_args={"prepare_threshold": None},
        json_deserializer=orjson.loads,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def make_read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that read from one snapshot, for pages and responses built from several queries.

    Without it an invoice could be read before a concurrent commit and its push after it.
    PostgreSQL's default READ COMMITTED takes a new snapshot per statement; REPEATABLE READ keeps
    the first. The SQLite driver starts a transaction only before a write, so each SELECT would
    read on its own; here the connection is put in driver autocommit and the session issues an
    explicit BEGIN, which in WAL mode holds one read snapshot until the session closes. Writes do
    not go through these sessions. Both share the engine's pool.
    """
    if engine.dialect.name != "sqlite":
        return make_session_factory(engine.execution_options(isolation_level="REPEATABLE READ"))
    factory = make_session_factory(engine.execution_options(isolation_level="AUTOCOMMIT"))

    @event.listens_for(factory, "after_begin")
    def _begin_read(_session: Session, _transaction: Any, connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return factory


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits once on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def update_if(session: Session, record: Any, *conditions: Any, **values: Any) -> bool:
    """Write ``values`` to ``record``'s row only where ``conditions`` still hold; whether it did.

    One conditional UPDATE: the database re-evaluates the WHERE clause on the row it locks, so
    of any number of concurrent callers exactly one succeeds, where checking the loaded object
    and then writing would let them all pass. ``record`` is refreshed either way.
    """
    model = type(record)
    statement = update(model).where(model.id == record.id, *conditions).values(**values)
    result = session.execute(statement.execution_options(synchronize_session=False))
    session.refresh(record)
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


def this_runner() -> str:
    """``host:pid`` of this process, recorded on the runs it executes."""
    return f"{socket.gethostname()}:{os.getpid()}"


def runner_is_dead(runner: str | None) -> bool:
    """True when ``runner`` is a process on this host that no longer exists."""
    if not runner:
        return False
    host, _, pid = runner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another host's process: only its heartbeat can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


class Heartbeat:
    """Stamps a RUNNING record's ``heartbeat_at`` every ``every`` seconds from a thread, so that
    long work is not mistaken for a dead process (``model`` has ``id``, ``status`` and
    ``heartbeat_at``)."""

    def __init__(self, session_factory: sessionmaker[Session], model: Any, record_id: str, every: float) -> None:
        self._session_factory = session_factory
        self._model = model
        self._record_id = record_id
        self._every = every
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{record_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        model = self._model
        while not self._stopped.wait(self._every):
            try:
                with transaction(self._session_factory) as session:
                    session.execute(
                        update(model)
                        .where(model.id == self._record_id, model.status == "RUNNING")
                        .values(heartbeat_at=utcnow())
                    )
            except Exception:
                log.exception("%s %s: heartbeat failed", model.__tablename__, self._record_id)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)


_LOCK_STRIPES = [threading.Lock() for _ in range(64)]


@contextmanager
def exclusive_transaction(factory: sessionmaker[Session], key: str) -> Iterator[Session]:
    """A transaction that holds ``key``: across processes on PostgreSQL, within this process everywhere.

    Never nest two of these: two keys on one stripe would deadlock.
    """
    with _LOCK_STRIPES[hash(key) % len(_LOCK_STRIPES)], transaction(factory) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
        yield session
