"""Shared fixtures: settings on a temporary SQLite file with a test encryption key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncEngine

from castbridge.config import Settings
from castbridge.secrets import SecretBox
from castbridge.store import migrate
from castbridge.store.db import create_engine

TEST_FERNET_KEY = Fernet.generate_key().decode()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated from the developer's environment and `.env`."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'castbridge.db'}",
        secret_keys=TEST_FERNET_KEY,
    )


@pytest.fixture
def secret_box() -> SecretBox:
    return SecretBox([TEST_FERNET_KEY])


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite file database, disposed after the test."""
    eng = create_engine(settings.effective_database_url)
    await migrate.upgrade(eng)
    yield eng
    await eng.dispose()
