"""The claim's cost does not grow with the queue: SQLite must find the claimed rows by their
primary key, not walk every queued job through the (state, lease) index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from castbridge.config import Settings
from castbridge.secrets import SecretBox
from castbridge.store import jobs, migrate
from castbridge.store.db import Store, create_engine
from castbridge.store.jobs import NewJob
from tests.conftest import TEST_FERNET_KEY


async def test_claim_finds_its_rows_by_primary_key(settings: Settings) -> None:
    engine = create_engine(settings.effective_database_url)
    await migrate.upgrade(engine, secret_box=SecretBox([TEST_FERNET_KEY]))
    store = Store(engine)
    due = datetime.now(UTC) - timedelta(seconds=1)
    async with store.write() as session:
        await jobs.enqueue_many(
            session,
            [NewJob(kind="send", lane="send", run_at=due, location_id="loc") for _ in range(2000)],
        )
    captured: list[tuple[str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _capture(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE JOBS"):
            captured.append((statement, params))

    try:
        async with store.write() as session:
            claimed = await jobs.claim(
                session, lane="send", worker_id="w", limit=32, lease_seconds=60
            )
            assert len(claimed) == 32
            statement, params = captured[0]
            connection = await session.connection()
            plan = [
                str(row[-1])
                for row in (
                    await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                ).all()
            ]
    finally:
        await engine.dispose()
    assert not any("ix_jobs_lease" in step for step in plan), plan
    assert any("PRIMARY KEY" in step for step in plan), plan
    assert any("ix_jobs_lane_due" in step for step in plan), plan
