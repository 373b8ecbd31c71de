"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL: a
model change without its migration (or the reverse) fails here, not in production."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from castbridge.store.models import Base


def _differences(connection: Any) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": False}
    )
    found = compare_metadata(context, Base.metadata)
    # Alembic's own bookkeeping table is not a model.
    return [diff for diff in found if "alembic_version" not in repr(diff)]


async def test_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert differences == []
