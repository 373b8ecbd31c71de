"""Every difference between SQLite and PostgreSQL that castbridge's SQL depends on, in one place."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

# The channel a worker LISTENs on for new due work; the payload is the lane.
JOBS_CHANNEL = "castbridge_jobs"

# The advisory lock key migrations take on PostgreSQL ("castbridge migrate" as one bigint).
MIGRATION_LOCK_KEY = 0x63_62_6D_69_67_72_61_74

# SQLite errors that mean "another writer holds the database", worth a short wait and retry.
SQLITE_BUSY_TEXTS = ("database is locked", "database table is locked", "database is busy")


def name_of(bind: AsyncSession | AsyncEngine) -> str:
    if isinstance(bind, AsyncSession):
        return str(bind.get_bind().dialect.name)
    return str(bind.dialect.name)


def is_sqlite(bind: AsyncSession | AsyncEngine) -> bool:
    return name_of(bind) == "sqlite"


def insert(session: AsyncSession, model: type[Any] | Table) -> Any:
    """An INSERT that knows ON CONFLICT on both databases."""
    return insert_for(name_of(session), model)


def insert_for(dialect_name: str, model: type[Any] | Table) -> Any:
    """`insert` for a dialect named ahead of any session (statements built once and cached)."""
    if dialect_name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def greatest(session: AsyncSession, *values: Any) -> Any:
    return func.max(*values) if is_sqlite(session) else func.greatest(*values)


def now(session: AsyncSession) -> Any:
    """The database's clock for leases and due times: `now() (+ timedelta)` in SQL on
    PostgreSQL, where several hosts share one database but not one clock; on SQLite, which
    lives on one host, that host's clock as a Python value (SQLite has no datetime arithmetic,
    so `now + timedelta` must be computed before it is bound)."""
    if is_sqlite(session):
        return datetime.now(UTC)
    return func.now()


def strip_nul(value: str) -> str:
    """PostgreSQL text cannot hold U+0000 (SQLite can); castbridge keeps neither."""
    return value.replace("\x00", "") if "\x00" in value else value


def is_busy(exc: BaseException) -> bool:
    """A lock or pool wait that passes: SQLite's busy database, a pool that is exhausted."""
    text = str(exc).lower()
    return any(fragment in text for fragment in SQLITE_BUSY_TEXTS) or "queuepool" in text


async def notify_jobs(session: AsyncSession, lanes: Iterable[str]) -> None:
    """Tell every listening worker that these lanes have due work (PostgreSQL only).

    NOTIFY is transactional: it reaches listeners only when the caller's transaction commits,
    so a worker never wakes for a job it cannot see yet, and repeats within one transaction
    are folded into one notification by PostgreSQL. SQLite lives in one process, which wakes
    its own worker in memory.
    """
    wanted = sorted(set(lanes))
    if not wanted or name_of(session) != "postgresql":
        return
    await session.execute(select(*(func.pg_notify(JOBS_CHANNEL, lane) for lane in wanted)))


def lock_for_migrations(connection: Connection) -> None:
    """Hold the migration lock for the rest of this transaction (PostgreSQL).

    Several processes starting at once would otherwise all run the same DDL; with the lock one
    migrates and the others wait, then find the schema at head and do nothing. SQLite needs
    no lock: BEGIN IMMEDIATE already admits one writer.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


async def database_clock(engine: AsyncEngine) -> datetime | None:
    """The database server's clock (PostgreSQL), for the clock-skew check; None on SQLite,
    which runs on this host and so on this clock."""
    if is_sqlite(engine):
        return None
    async with engine.connect() as connection:
        value = (await connection.execute(select(func.now()))).scalar_one()
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def ping(engine: AsyncEngine) -> None:
    """One round trip: raises when the database cannot be reached."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
