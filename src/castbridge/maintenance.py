"""Housekeeping jobs: pruning what would otherwise grow without bound, on a schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from castbridge.logging import get_logger
from castbridge.outbound.runtime import Runtime
from castbridge.store import events, jobs
from castbridge.store.jobs import ClaimedJob, NewJob, Transition

log = get_logger(__name__)

PRUNE_EVERY = timedelta(hours=1)
FINISHED_JOBS_KEPT = timedelta(days=7)


def prune_job(run_at: datetime | None = None) -> NewJob:
    return NewJob(
        kind="prune",
        lane="admin",
        run_at=run_at or datetime.now(UTC),
        singleton_key="prune",
    )


async def prune(rt: Runtime, job: ClaimedJob) -> Transition:
    """Expired OAuth states, webhook ids past HighLevel's retries, old gateway events and
    finished jobs; then the next run is queued (one prune job exists at a time)."""
    now = datetime.now(UTC)

    async def _work(session: object) -> dict[str, int]:
        from sqlalchemy.ext.asyncio import AsyncSession

        assert isinstance(session, AsyncSession)
        removed = await events.prune(session, now=now)
        removed["jobs"] = await jobs.prune_finished(session, older_than=now - FINISHED_JOBS_KEPT)
        return removed

    removed = await rt.store.run(_work)
    if any(removed.values()):
        log.info("pruned", **removed)
    return Transition(fate="done", enqueue=(_next(now),))


def _next(now: datetime) -> NewJob:
    return prune_job(now + PRUNE_EVERY)
