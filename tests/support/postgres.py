"""A real PostgreSQL for the tests: a fresh database per test on the server `.ci/run` starts.

`CASTBRIDGE_TEST_POSTGRES_URL` names the server's admin database (for example
`postgresql://postgres@127.0.0.1:55432/postgres`). Without it the PostgreSQL variants are
skipped, unless `CASTBRIDGE_TEST_POSTGRES_REQUIRED=1` (CI) makes that an error.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from castbridge.config import async_database_url

ADMIN_URL = os.environ.get("CASTBRIDGE_TEST_POSTGRES_URL", "").strip()
REQUIRED = os.environ.get("CASTBRIDGE_TEST_POSTGRES_REQUIRED", "") == "1"


def available() -> bool:
    if not ADMIN_URL and REQUIRED:
        raise RuntimeError(
            "CASTBRIDGE_TEST_POSTGRES_REQUIRED=1 but no CASTBRIDGE_TEST_POSTGRES_URL"
        )
    return bool(ADMIN_URL)


def skip_without_postgres() -> None:
    if not available():
        pytest.skip("no PostgreSQL (set CASTBRIDGE_TEST_POSTGRES_URL; .ci/run does)")


def _plain(url: str) -> str:
    """asyncpg's own DSN form of a SQLAlchemy URL."""
    return async_database_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new empty database for one test; yields its SQLAlchemy URL, dropped afterwards."""
    import asyncpg

    name = f"cb_{uuid.uuid4().hex[:16]}"
    admin = _plain(ADMIN_URL)
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    base, _, _db = async_database_url(ADMIN_URL).rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()
