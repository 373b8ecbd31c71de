"""Engines and the Store: reads on any connection, writes one at a time on SQLite.

SQLite has one writer per database. castbridge serialises its own writes with an in-process
lock and opens them with BEGIN IMMEDIATE, so a write never upgrades from a read lock halfway
(which SQLite answers with an immediate "database is locked"), and a webhook that cannot get
the lock in time is answered 429 instead of waiting on SQLite's busy timeout. On PostgreSQL
writers run concurrently and the lock is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from castbridge import metrics
from castbridge.config import ConfigError
from castbridge.store import dialect, sqlite_driver

if TYPE_CHECKING:
    from castbridge.store.group import GroupCommit

T = TypeVar("T")

# How long a SQLite connection waits for another process's write lock. Short on purpose:
# a webhook must be answered (429) within ~2 s, and the worker retries a busy write itself.
SQLITE_BUSY_MS = 1500


class StoreBusy(Exception):
    """The database cannot take this write right now (locked, unreachable, pool exhausted)."""


_VERBS = ("select", "insert", "update", "delete")


def _count_statements(engine: AsyncEngine) -> None:
    """Statements and commits into /metrics: what a message costs the database, per verb."""
    by_verb = {verb: metrics.DB_STATEMENTS.labels(verb) for verb in _VERBS}
    other = metrics.DB_STATEMENTS.labels("other")

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _statement(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
    ) -> None:
        verb = statement.lstrip()[:6].lower()
        by_verb.get(verb, other).inc()

    @event.listens_for(engine.sync_engine, "commit")
    def _commit(_conn: Any) -> None:
        metrics.DB_COMMITS.inc()


def create_engine(url: str, *, sqlite_synchronous: str = "FULL") -> AsyncEngine:
    """An async engine; for SQLite, make the folder and set WAL, fsync and lock-wait pragmas.

    SQL parameters are never logged or put into error messages (`hide_parameters`): they hold
    phone numbers, message text and encrypted tokens.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            # 0700: the file holds message text and encrypted personal data.
            Path(database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if parsed.query:
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_MS / 1000}
        else:
            # One crossing to aiosqlite's thread per statement instead of four (see the module).
            kwargs["async_creator"] = sqlite_driver.connector(
                database or ":memory:", timeout=SQLITE_BUSY_MS / 1000
            )
    else:
        if importlib.util.find_spec("asyncpg") is None:
            raise ConfigError(
                "CASTBRIDGE_DATABASE_URL: PostgreSQL needs the asyncpg driver; install it with "
                "`uv sync --extra postgres`"
            )
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=10, pool_timeout=5)
    engine = create_async_engine(url, **kwargs)
    _count_statements(engine)
    if backend == "sqlite":
        synchronous = "FULL" if sqlite_synchronous.upper() == "FULL" else "NORMAL"

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Transactions are begun by hand (below), so the driver must not begin its own.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            # WAL lets readers run beside the one writer; with synchronous=FULL every committed
            # transaction is on disk before COMMIT returns, so kill -9 loses nothing committed.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            immediate = connection.get_execution_options().get("castbridge_write", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, PoolTimeoutError | StoreBusy):
        return True
    if isinstance(exc, OperationalError | DBAPIError):
        return (
            dialect.is_busy(exc)
            or bool(getattr(exc, "connection_invalidated", False))
            or (isinstance(exc, OperationalError))
        )
    return isinstance(exc, ConnectionError | OSError)


class Store:
    """The database as the rest of castbridge uses it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sqlite = is_sqlite(engine)
        self.sessions = create_sessionmaker(engine)
        self._writes = create_sessionmaker(engine.execution_options(castbridge_write=True))
        self._lock = asyncio.Lock() if self.sqlite else None

    def listen_dsn(self) -> str | None:
        """An asyncpg DSN for a worker's LISTEN connection; None on SQLite (one process, which
        wakes its worker in memory)."""
        if self.sqlite:
            return None
        url = self.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def read(self) -> AsyncSession:
        """A session for reads (`async with store.read() as session`)."""
        return self.sessions()

    @contextlib.asynccontextmanager
    async def write(self, *, wait_at_most: float | None = None) -> AsyncIterator[AsyncSession]:
        """A write transaction, committed on leaving. With `wait_at_most`, raise StoreBusy when the
        write cannot start within that many seconds (SQLite's single writer is busy)."""
        if self._lock is None:
            async with self.sessions.begin() as session:
                yield session
            return
        try:
            if wait_at_most is None:
                await self._lock.acquire()
            else:
                await asyncio.wait_for(self._lock.acquire(), wait_at_most)
        except TimeoutError:
            raise StoreBusy("the database is busy") from None
        try:
            async with self._writes.begin() as session:
                yield session
        finally:
            self._lock.release()

    async def run(
        self,
        work: Callable[[AsyncSession], Awaitable[T]],
        *,
        attempts: int = 8,
        first_wait: float = 0.05,
        group: GroupCommit | None = None,
    ) -> T:
        """Run `work` in a write transaction, retrying it while the database is busy or briefly
        unreachable. For the worker's outcomes: a send's result must not be lost to a lock.
        With `group`, the transaction is shared with the other writes submitted meanwhile."""
        wait = first_wait
        for attempt in range(attempts):
            try:
                if group is not None:
                    return await group.submit(work)
                async with self.write() as session:
                    return await work(session)
            except Exception as exc:
                if attempt == attempts - 1 or not _is_unavailable(exc):
                    raise
            await asyncio.sleep(wait * random.uniform(0.5, 1.5))
            wait = min(wait * 2, 2.0)
        raise AssertionError("unreachable")  # pragma: no cover


def unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the database cannot do this right now" (answer 429)."""
    return _is_unavailable(exc)
