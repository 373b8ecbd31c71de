"""Every difference between SQLite and PostgreSQL that castbridge's SQL depends on, in one place."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.types import DateTime

# SQLite errors that mean "another writer holds the database", worth a short wait and retry.
SQLITE_BUSY_TEXTS = ("database is locked", "database table is locked", "database is busy")


def name_of(bind: AsyncSession | AsyncEngine) -> str:
    if isinstance(bind, AsyncSession):
        return str(bind.get_bind().dialect.name)
    return str(bind.dialect.name)


def is_sqlite(bind: AsyncSession | AsyncEngine) -> bool:
    return name_of(bind) == "sqlite"


def insert(session: AsyncSession, model: type[Any]) -> Any:
    """An INSERT that knows ON CONFLICT on both databases."""
    if name_of(session) == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def greatest(session: AsyncSession, *values: Any) -> Any:
    return func.max(*values) if is_sqlite(session) else func.greatest(*values)


def now(session: AsyncSession) -> ColumnElement[datetime]:
    """The database's clock for leases and due times. On PostgreSQL several hosts share one
    database but not one clock, so the database's `now()` decides; SQLite lives on one host,
    whose clock it is."""
    if is_sqlite(session):
        return literal(datetime.now(UTC), DateTime(timezone=True))
    return func.now()


def strip_nul(value: str) -> str:
    """PostgreSQL text cannot hold U+0000 (SQLite can); castbridge keeps neither."""
    return value.replace("\x00", "") if "\x00" in value else value


def is_busy(exc: BaseException) -> bool:
    """A lock or pool wait that passes: SQLite's busy database, a pool that is exhausted."""
    text = str(exc).lower()
    return any(fragment in text for fragment in SQLITE_BUSY_TEXTS) or "queuepool" in text
