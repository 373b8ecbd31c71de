"""The durable outbox: one message per messageId, atomic claims, leases and fencing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from castbridge.store import repository as repo
from castbridge.store.db import create_sessionmaker


def _message(ghl_id: str) -> repo.NewMessage:
    return repo.NewMessage(
        ghl_message_id=ghl_id,
        location_id="loc-1",
        contact_id="c-1",
        phone_raw="+639171234567",
        phone_e164="+639171234567",
        text="hi",
        attachments=[],
        encoding="GSM-7",
        parts_estimate=1,
        status="queued",
    )


async def _insert(engine: AsyncEngine, ghl_id: str) -> int | None:
    sessions = create_sessionmaker(engine)
    async with sessions.begin() as session:
        return await repo.insert_message_with_job(
            session, _message(ghl_id), repo.NewJob("send", repo.utcnow(), {})
        )


async def test_repeated_message_id_creates_no_second_job(engine: AsyncEngine) -> None:
    """The same messageId inserted three times at once yields one message and one job."""
    results = await asyncio.gather(*(_insert(engine, "m-dup") for _ in range(3)))
    assert sum(result is not None for result in results) == 1
    async with create_sessionmaker(engine)() as session:
        counts = await repo.job_counts(session)
    assert counts == {"send:queued": 1}


async def test_concurrent_claims_never_share_a_job(engine: AsyncEngine) -> None:
    """Four workers claiming from 40 due jobs take each job exactly once."""
    for index in range(40):
        await _insert(engine, f"m-{index}")
    sessions = create_sessionmaker(engine)

    async def claim(worker: str) -> list[int]:
        taken: list[int] = []
        while True:
            async with sessions.begin() as session:
                jobs = await repo.claim_jobs(session, worker_id=worker, limit=3, lease_seconds=60)
            if not jobs:
                return taken
            taken.extend(job.id for job in jobs)

    claimed = await asyncio.gather(*(claim(f"w{n}") for n in range(4)))
    flat = [job_id for ids in claimed for job_id in ids]
    assert len(flat) == 40
    assert len(set(flat)) == 40


async def test_expired_lease_is_reclaimed_and_fences_the_old_worker(engine: AsyncEngine) -> None:
    """A crashed worker's job comes back after its lease; its late write then changes nothing."""
    await _insert(engine, "m-lease")
    sessions = create_sessionmaker(engine)
    async with sessions.begin() as session:
        (first,) = await repo.claim_jobs(session, worker_id="dead", limit=1, lease_seconds=0.05)
    await asyncio.sleep(0.1)
    async with sessions.begin() as session:
        (second,) = await repo.claim_jobs(session, worker_id="alive", limit=1, lease_seconds=60)
    assert second.id == first.id
    assert second.attempts == first.attempts + 1
    async with sessions.begin() as session:
        assert not await repo.finish_job(session, first, "dead")
        assert await repo.finish_job(session, second, "alive")


async def test_rescheduled_job_waits_until_due(engine: AsyncEngine) -> None:
    """A job rescheduled into the future is not claimable until then."""
    await _insert(engine, "m-later")
    sessions = create_sessionmaker(engine)
    async with sessions.begin() as session:
        (job,) = await repo.claim_jobs(session, worker_id="w", limit=1, lease_seconds=60)
        await repo.reschedule_job(
            session, job, "w", run_at=repo.utcnow() + timedelta(hours=1), error="later"
        )
    async with sessions.begin() as session:
        assert await repo.claim_jobs(session, worker_id="w", limit=1, lease_seconds=60) == []


async def test_released_job_keeps_its_attempt_budget(engine: AsyncEngine) -> None:
    """A job handed back on shutdown is due at once and the interrupted try is not counted."""
    await _insert(engine, "m-release")
    sessions = create_sessionmaker(engine)
    async with sessions.begin() as session:
        (job,) = await repo.claim_jobs(session, worker_id="w", limit=1, lease_seconds=60)
        assert await repo.release_jobs(session, "w", [job.id]) == 1
    async with sessions.begin() as session:
        (again,) = await repo.claim_jobs(session, worker_id="w2", limit=1, lease_seconds=60)
    assert again.attempts == 1
