"""Shared fixtures: settings on a temporary SQLite file with a test encryption key, and the
same tests again on a fresh PostgreSQL database where a test asks for `database`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncEngine

from castbridge.config import Settings
from castbridge.secrets import SecretBox
from castbridge.store import migrate
from castbridge.store.db import create_engine
from tests.support import postgres

TEST_FERNET_KEY = Fernet.generate_key().decode()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated from the developer's environment and `.env`."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        env_file=None,
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'castbridge.db'}",
        secret_keys=TEST_FERNET_KEY,
    )


@pytest.fixture
def secret_box() -> SecretBox:
    return SecretBox([TEST_FERNET_KEY])


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    """Overrides for `run_stack`/Settings: {} for the default SQLite file, or a fresh
    PostgreSQL database. Tests that take it run on both."""
    if request.param == "sqlite":
        yield {}
        return
    postgres.skip_without_postgres()
    async with postgres.fresh_database() as url:
        yield {"database_url": url}


@pytest.fixture
async def engine(settings: Settings, database: dict[str, Any]) -> AsyncIterator[AsyncEngine]:
    """A migrated database (SQLite file, then PostgreSQL), disposed after the test."""
    url = database.get("database_url", settings.effective_database_url)
    eng = create_engine(url)
    await migrate.upgrade(eng, secret_box=SecretBox([TEST_FERNET_KEY]))
    yield eng
    await eng.dispose()
