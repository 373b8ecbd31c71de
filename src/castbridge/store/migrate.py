"""Alembic, driven from code: upgrade on start, report whether the schema is at head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from castbridge.secrets import SecretBox
from castbridge.store import dialect

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(
    engine: AsyncEngine, revision: str = "head", *, secret_box: SecretBox | None = None
) -> None:
    """Apply pending migrations on the engine's own connection (SQLite and PostgreSQL), under
    the migration lock, so processes starting together migrate one at a time.

    `secret_box` lets a migration encrypt data it moves (0002 encrypts phone numbers).
    """

    def _run(connection: Connection) -> None:
        dialect.lock_for_migrations(connection)
        config = alembic_config()
        config.attributes["connection"] = connection
        config.attributes["secret_box"] = secret_box
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(_run)


async def current_revision(engine: AsyncEngine) -> str | None:
    def _read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(_read)
