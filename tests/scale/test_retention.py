"""Retention: finished jobs and attempts go after CASTBRIDGE_RETENTION_DAYS, finished messages
after CASTBRIDGE_MESSAGE_RETENTION_DAYS, open work never; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from castbridge import maintenance
from castbridge.config import Settings
from castbridge.store import messages, retention
from castbridge.store.db import Store
from castbridge.store.jobs import AttemptRecord, NewJob
from castbridge.store.models import Attempt, Job, Message
from tests.store.test_jobs import _message

NOW = datetime.now(UTC)


async def _message_aged(
    store: Store,
    ghl_id: str,
    *,
    status: str,
    job_state: str,
    message_age: timedelta,
    job_age: timedelta,
    attempt_age: timedelta,
) -> int:
    """A message with one job and one attempt, each last touched `*_age` ago."""
    async with store.write() as session:
        inserted = await messages.insert_with_job(
            session,
            _message(ghl_id),
            NewJob(kind="send", lane="send", run_at=NOW, location_id="loc-1"),
        )
        message_id = inserted.message_id
        assert message_id is not None
        job_id = (
            await session.execute(select(Job.id).where(Job.message_id == message_id))
        ).scalar_one()
        await messages.record_attempt(
            session, message_id, job_id, AttemptRecord(kind="send", outcome="accepted")
        )
        await session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(status=status, updated_at=NOW - message_age, finished_at=NOW - message_age)
        )
        await session.execute(
            update(Job).where(Job.id == job_id).values(state=job_state, updated_at=NOW - job_age)
        )
        await session.execute(
            update(Attempt).where(Attempt.message_id == message_id).values(at=NOW - attempt_age)
        )
    return message_id


async def _rows(
    store: Store, model: type[Message] | type[Job] | type[Attempt], message_id: int
) -> int:
    column = Message.id if model is Message else model.message_id  # type: ignore[union-attr]
    async with store.read() as session:
        statement = select(func.count()).select_from(model).where(column == message_id)
        return int((await session.execute(statement)).scalar_one())


async def test_retention_keeps_messages_longer_than_jobs(
    engine: AsyncEngine, settings: Settings
) -> None:
    """With 7 and 90 days: a 100-day-old delivered message goes whole; a 30-day-old one loses
    its job and attempt but stays; yesterday's stays whole; an old message still queued keeps
    everything; a recent attempt of an old job keeps its line (without the job)."""
    store = Store(engine)
    days = timedelta(days=1)
    old = await _message_aged(
        store, "m-old", status="delivered", job_state="done",
        message_age=100 * days, job_age=100 * days, attempt_age=100 * days,
    )  # fmt: skip
    middle = await _message_aged(
        store, "m-mid", status="delivered", job_state="done",
        message_age=30 * days, job_age=30 * days, attempt_age=30 * days,
    )  # fmt: skip
    recent = await _message_aged(
        store, "m-new", status="delivered", job_state="done",
        message_age=days, job_age=days, attempt_age=days,
    )  # fmt: skip
    still_open = await _message_aged(
        store, "m-open", status="accepted", job_state="queued",
        message_age=100 * days, job_age=100 * days, attempt_age=100 * days,
    )  # fmt: skip
    late_line = await _message_aged(
        store, "m-line", status="failed", job_state="done",
        message_age=30 * days, job_age=30 * days, attempt_age=days,
    )  # fmt: skip
    tuned = settings.model_copy(update={"retention_days": 7.0, "message_retention_days": 90.0})

    removed = await maintenance.apply_retention(store, tuned, now=NOW)

    assert removed == {"messages": 1, "jobs": 2, "attempts": 1}
    counts = {
        name: [await _rows(store, model, m) for model in (Message, Job, Attempt)]
        for name, m in {
            "old": old,
            "middle": middle,
            "recent": recent,
            "open": still_open,
            "line": late_line,
        }.items()
    }
    assert counts == {
        "old": [0, 0, 0],
        "middle": [1, 0, 0],
        "recent": [1, 1, 1],
        "open": [1, 1, 1],
        "line": [1, 0, 1],
    }
    async with store.read() as session:
        (line,) = await messages.attempts_for(session, late_line)
    assert line.job_id is None


@pytest.mark.parametrize("batch", [1, 2])
async def test_retention_works_in_batches(engine: AsyncEngine, batch: int) -> None:
    """One call deletes at most `batch` rows (a short transaction); repeated calls finish."""
    store = Store(engine)
    for n in range(3):
        await _message_aged(
            store, f"m-{n}", status="delivered", job_state="done",
            message_age=timedelta(days=200), job_age=timedelta(days=200),
            attempt_age=timedelta(days=200),
        )  # fmt: skip
    cutoff = NOW - timedelta(days=90)
    rounds = []
    while True:
        async with store.write() as session:
            count = await retention.prune_messages(session, older_than=cutoff, batch=batch)
        rounds.append(count)
        if count == 0:
            break
    assert max(rounds) <= batch
    assert sum(rounds) == 3
