"""Deleting finished work past its retention, a batch per transaction so no prune holds the queue.

Jobs that are done or cancelled go after CASTBRIDGE_RETENTION_DAYS, and so do the attempts
(timeline lines) of messages that are finished; the messages themselves, with whatever of
theirs is left, go after CASTBRIDGE_MESSAGE_RETENTION_DAYS. Nothing open is touched: a
message with a queued or running job stays, whatever its age.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.store.messages import TERMINAL_MESSAGE_STATES
from castbridge.store.models import Attempt, Job, Message

BATCH = 2000
FINISHED_JOB_STATES = ("done", "cancelled")
# Messages whose sends ran out are kept for replay, but not beyond the message retention.
PRUNABLE_MESSAGE_STATES = (*sorted(TERMINAL_MESSAGE_STATES), "dead")


async def prune_jobs(session: AsyncSession, *, older_than: datetime, batch: int = BATCH) -> int:
    """Delete up to `batch` finished jobs last touched before `older_than`. Attempts that name
    them keep their line, without the job (attempts outlive jobs)."""
    ids = list(
        (
            await session.execute(
                select(Job.id)
                .where(Job.state.in_(FINISHED_JOB_STATES), Job.updated_at < older_than)
                .limit(batch)
            )
        ).scalars()
    )
    if not ids:
        return 0
    await session.execute(
        update(Attempt)
        .where(Attempt.job_id.in_(ids))
        .values(job_id=None)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(
        delete(Job).where(Job.id.in_(ids)).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def prune_attempts(session: AsyncSession, *, older_than: datetime, batch: int = BATCH) -> int:
    """Delete up to `batch` attempts older than `older_than` of messages that are finished."""
    ids = (
        select(Attempt.id)
        .join(Message, Message.id == Attempt.message_id)
        .where(Attempt.at < older_than, Message.status.in_(PRUNABLE_MESSAGE_STATES))
        .limit(batch)
        .scalar_subquery()
    )
    result = await session.execute(
        delete(Attempt).where(Attempt.id.in_(ids)).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def prune_messages(session: AsyncSession, *, older_than: datetime, batch: int = BATCH) -> int:
    """Delete up to `batch` finished messages last changed before `older_than`, with their
    remaining attempts and jobs; a message with an open job is left alone."""
    open_job = exists().where(Job.message_id == Message.id, Job.state.in_(("queued", "running")))
    ids = list(
        (
            await session.execute(
                select(Message.id)
                .where(
                    Message.status.in_(PRUNABLE_MESSAGE_STATES),
                    func.coalesce(Message.finished_at, Message.updated_at) < older_than,
                    ~open_job,
                )
                .limit(batch)
            )
        ).scalars()
    )
    if not ids:
        return 0
    for model in (Attempt, Job):
        await session.execute(
            delete(model)
            .where(model.message_id.in_(ids))
            .execution_options(synchronize_session=False)
        )
    result = await session.execute(
        delete(Message).where(Message.id.in_(ids)).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
