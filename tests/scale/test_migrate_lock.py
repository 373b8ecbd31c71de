"""Several processes starting at once on one empty PostgreSQL: one migrates, the others wait."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sqlalchemy import text

from castbridge.config import Settings, settings_env
from castbridge.store import migrate
from castbridge.store.db import create_engine
from tests.support import postgres

PROCESSES = 5

# Each child imports castbridge, then waits for the go file, so all of them reach the
# migration within milliseconds of each other (Python's start-up alone would stagger them).
CHILD = """
import os, sys, time
from castbridge.cli import app
while not os.path.exists(sys.argv[1]):
    time.sleep(0.005)
app(["db", "upgrade"])
"""


async def test_processes_starting_together_migrate_once(settings: Settings, tmp_path: Path) -> None:
    """Five `castbridge db upgrade` processes started together on an empty database all
    succeed (without the lock they race on the same CREATE TABLEs and fail), and the schema
    ends at head with one version row."""
    postgres.skip_without_postgres()
    async with postgres.fresh_database() as url:
        env = {
            **os.environ,
            **settings_env(settings.model_copy(update={"database_url": url})),
            "CASTBRIDGE_ENV_FILE": "/dev/null",
            "CASTBRIDGE_LOG_LEVEL": "WARNING",
        }
        go = tmp_path / "go"
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CHILD,
                str(go),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(PROCESSES)
        ]
        await asyncio.sleep(4)  # every child is waiting at the line
        go.touch()
        outputs = await asyncio.wait_for(
            asyncio.gather(*(child.communicate() for child in children)), 120
        )
        failures = [
            (child.returncode, err.decode()[-800:])
            for child, (_out, err) in zip(children, outputs, strict=True)
            if child.returncode != 0
        ]
        assert failures == []
        engine = create_engine(url)
        try:
            assert await migrate.current_revision(engine) == migrate.head_revision()
            async with engine.connect() as connection:
                rows = (
                    await connection.execute(text("SELECT count(*) FROM alembic_version"))
                ).scalar()
            assert rows == 1
        finally:
            await engine.dispose()
