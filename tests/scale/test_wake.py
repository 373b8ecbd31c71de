"""Workers wake on new work through LISTEN/NOTIFY on PostgreSQL, and do not busy-poll at idle."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from castbridge import metrics
from castbridge.config import Settings
from castbridge.resources import open_resources
from castbridge.store import jobs
from castbridge.store.db import Store, create_engine
from castbridge.store.jobs import NewJob
from castbridge.worker.wake import JobListener
from tests.support import postgres


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    postgres.skip_without_postgres()
    async with postgres.fresh_database() as url:
        yield url


def _probe(run_at: datetime | None = None) -> NewJob:
    # A probe for no account finishes at once without any outside call.
    return NewJob(kind="probe", lane="admin", run_at=run_at or datetime.now(UTC))


async def _listening(listener: JobListener) -> None:
    deadline = time.monotonic() + 10
    while not listener.listening:
        assert time.monotonic() < deadline, "the listener never connected"
        await asyncio.sleep(0.02)


async def test_enqueue_notifies_listener_only_after_commit(settings: Settings, pg_url: str) -> None:
    """A due job reaches a listening process when its transaction commits, not before; a job
    due later sends nothing (the worker reads its due time itself)."""
    async with open_resources(
        settings.model_copy(update={"database_url": pg_url}), with_worker=False
    ) as res:
        heard: list[str | None] = []
        arrived = asyncio.Event()

        def on_lane(lane: str | None) -> None:
            if lane is not None:
                heard.append(lane)
                arrived.set()

        dsn = res.store.listen_dsn()
        assert dsn is not None
        listener = JobListener(dsn, on_lane)
        task = asyncio.create_task(listener.run())
        try:
            await _listening(listener)
            async with res.store.write() as session:
                await jobs.enqueue(session, _probe(datetime.now(UTC) + timedelta(hours=1)))
                await jobs.enqueue(session, _probe())
                await asyncio.sleep(0.3)
                assert heard == [], "notified before commit"
            await asyncio.wait_for(arrived.wait(), 5)
            await asyncio.sleep(0.2)
            assert heard == ["admin"]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_worker_wakes_on_work_queued_by_another_process(
    settings: Settings, pg_url: str
) -> None:
    """With a 30 s poll interval, a job committed through another engine (another process)
    runs within a couple of seconds; and an idle, listening worker issues almost no SQL."""
    worker_settings = settings.model_copy(
        update={"database_url": pg_url, "worker_poll_interval": 30.0}
    )
    async with open_resources(worker_settings, with_worker=True) as res:
        worker = res.worker
        assert worker is not None
        assert worker.listener is not None
        running = asyncio.create_task(worker.run())
        other = create_engine(pg_url)
        try:
            await _listening(worker.listener)
            await asyncio.sleep(1.0)  # the standing jobs at start are done
            before = sum(
                metrics.DB_STATEMENTS.labels(verb)._value.get()
                for verb in ("select", "insert", "update", "delete", "other")
            )
            await asyncio.sleep(3.0)
            after = sum(
                metrics.DB_STATEMENTS.labels(verb)._value.get()
                for verb in ("select", "insert", "update", "delete", "other")
            )
            assert after - before <= 2, f"idle worker ran {after - before} statements in 3 s"

            started = time.monotonic()
            async with Store(other).write() as session:
                job_id = await jobs.enqueue(session, _probe())
            assert job_id is not None
            while True:
                async with Store(other).read() as session:
                    states = await jobs.counts(session)
                if states.get("probe:done"):
                    break
                assert time.monotonic() - started < 3, f"not woken: {states}"
                await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await asyncio.wait_for(running, 30)
            await other.dispose()


async def test_listener_reconnects_after_its_connection_is_killed(
    settings: Settings, pg_url: str
) -> None:
    """PostgreSQL ends the LISTEN connection (a failover, an idle-connection killer): the
    listener says it is not listening (the worker polls meanwhile), reconnects, looks at every
    lane once, and hears notifications again."""
    from sqlalchemy import text

    async with open_resources(
        settings.model_copy(update={"database_url": pg_url}), with_worker=False
    ) as res:
        heard: list[str | None] = []
        dsn = res.store.listen_dsn()
        assert dsn is not None
        listener = JobListener(dsn, heard.append)
        task = asyncio.create_task(listener.run())
        try:
            await _listening(listener)
            assert heard == [None]  # the look at every lane after connecting
            async with res.store.write() as session:
                killed = (
                    await session.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                        )
                    )
                ).all()
            assert len(killed) == 1
            deadline = time.monotonic() + 5
            while listener.listening:
                assert time.monotonic() < deadline, "the lost connection went unnoticed"
                await asyncio.sleep(0.02)
            await _listening(listener)
            assert heard == [None, None]
            async with res.store.write() as session:
                await jobs.enqueue(session, _probe())
            deadline = time.monotonic() + 5
            while "admin" not in heard:
                assert time.monotonic() < deadline, heard
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
