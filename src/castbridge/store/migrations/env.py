"""Alembic environment: runs on a connection handed in by castbridge.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from castbridge.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite needs table rebuilds for most ALTERs
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    # Command-line use (`alembic revision --autogenerate`): a synchronous URL is required.
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url, or call castbridge.store.migrate.upgrade")
    with create_engine(
        url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    ).connect() as conn:
        _run(conn)
        conn.commit()
