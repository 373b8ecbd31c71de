"""The durable outbox: one message per (location, messageId), lane claims, leases, fencing and
transitions applied whole. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from castbridge.secrets import PhoneVault, SecretBox
from castbridge.store import jobs, messages
from castbridge.store.db import Store
from castbridge.store.jobs import AttemptRecord, NewJob, Transition
from tests.conftest import TEST_FERNET_KEY

VAULT = PhoneVault(SecretBox([TEST_FERNET_KEY]), b"k" * 32)


def _message(ghl_id: str, location: str = "loc-1") -> messages.NewMessage:
    return messages.NewMessage(
        ghl_message_id=ghl_id,
        location_id=location,
        contact_id="c-1",
        phone=VAULT.seal("+639171234567", e164=True),
        text="hi",
        attachments=[],
        encoding="GSM-7",
        parts_estimate=1,
        status="queued",
    )


def _send(location: str = "loc-1", lane: str = "send", run_at: datetime | None = None) -> NewJob:
    return NewJob(kind="send", lane=lane, run_at=run_at or datetime.now(UTC), location_id=location)


async def _insert(store: Store, ghl_id: str, location: str = "loc-1") -> messages.Inserted:
    async with store.write() as session:
        return await messages.insert_with_job(session, _message(ghl_id, location), _send(location))


async def test_repeated_message_id_creates_no_second_job(engine: AsyncEngine) -> None:
    """The same messageId inserted three times at once yields one message and one job."""
    store = Store(engine)
    results = await asyncio.gather(*(_insert(store, "m-dup") for _ in range(3)))
    assert sum(result.message_id is not None for result in results) == 1
    assert {r.conflict for r in results if r.message_id is None} == {"duplicate"}
    async with store.read() as session:
        assert await jobs.counts(session) == {"send:queued": 1}


async def test_message_id_of_another_location_is_not_stored(engine: AsyncEngine) -> None:
    """A messageId already stored for another location is refused (ghl.md §2 step 4: alert,
    send nothing), while keys stay unique per location, not globally."""
    store = Store(engine)
    first = await _insert(store, "m-shared", "loc-A")
    second = await _insert(store, "m-shared", "loc-B")
    assert first.message_id is not None
    assert (second.message_id, second.conflict) == (None, "other_location")
    async with store.read() as session:
        assert len(await messages.by_ghl_id(session, "m-shared")) == 1


async def test_claims_are_per_lane_and_never_shared(engine: AsyncEngine) -> None:
    """Four workers claiming from 40 due send jobs take each exactly once; a status job is
    only claimed from its own lane."""
    store = Store(engine)
    for index in range(40):
        await _insert(store, f"m-{index}")
    async with store.write() as session:
        await jobs.enqueue(session, _send(lane="status"))

    async def claim(worker: str) -> list[int]:
        taken: list[int] = []
        while True:
            async with store.write() as session:
                found = await jobs.claim(
                    session, lane="send", worker_id=worker, limit=3, lease_seconds=60
                )
            if not found:
                return taken
            taken.extend(job.id for job in found)

    claimed = await asyncio.gather(*(claim(f"w{n}") for n in range(4)))
    flat = [job_id for ids in claimed for job_id in ids]
    assert len(flat) == 40
    assert len(set(flat)) == 40
    async with store.write() as session:
        (status_job,) = await jobs.claim(
            session, lane="status", worker_id="s", limit=5, lease_seconds=60
        )
    assert status_job.lane == "status"


async def test_expired_lease_is_reaped_and_fences_the_old_worker(engine: AsyncEngine) -> None:
    """A crashed worker's job comes back after its lease; its late write then changes nothing."""
    store = Store(engine)
    await _insert(store, "m-lease")
    async with store.write() as session:
        (first,) = await jobs.claim(
            session, lane="send", worker_id="dead", limit=1, lease_seconds=0.05
        )
    await asyncio.sleep(0.2)
    async with store.write() as session:
        assert await jobs.reap(session) == 1
        (second,) = await jobs.claim(
            session, lane="send", worker_id="alive", limit=1, lease_seconds=60
        )
    assert second.id == first.id
    assert second.attempts == first.attempts + 1
    async with store.write() as session:
        assert not await jobs.apply(session, first, "dead", Transition(fate="done"))
        assert await jobs.apply(session, second, "alive", Transition(fate="done"))


async def test_transition_is_forward_only_and_skips_its_side_effects(engine: AsyncEngine) -> None:
    """A transition whose message already left the expected status updates nothing on the
    message and enqueues nothing (a late poll after a pushed report settled it)."""
    store = Store(engine)
    inserted = await _insert(store, "m-fwd")
    assert inserted.message_id is not None
    async with store.write() as session:
        await messages.update_message(session, inserted.message_id, {"status": "delivered"})
        (job,) = await jobs.claim(session, lane="send", worker_id="w", limit=1, lease_seconds=60)
    transition = Transition(
        fate="done",
        message={"status": "failed"},
        message_if_status=frozenset({"accepted"}),
        attempt=AttemptRecord("poll", "failed"),
        enqueue=(_send(lane="report"),),
    )
    async with store.write() as session:
        assert await jobs.apply(session, job, "w", transition)
    async with store.read() as session:
        message = await messages.get(session, inserted.message_id)
        assert message is not None
        assert message.status == "delivered"
        assert await messages.attempts_for(session, inserted.message_id) == []
        assert await jobs.counts(session) == {"send:done": 1}


async def test_waiting_is_not_an_attempt(engine: AsyncEngine) -> None:
    """A retry with count_attempt=False (a rate limit, a held account) keeps the budget."""
    store = Store(engine)
    await _insert(store, "m-wait")
    async with store.write() as session:
        (job,) = await jobs.claim(session, lane="send", worker_id="w", limit=1, lease_seconds=60)
        await jobs.apply(session, job, "w", Transition(fate="retry", count_attempt=False))
        (again,) = await jobs.claim(session, lane="send", worker_id="w", limit=1, lease_seconds=60)
    assert again.attempts == 1


async def test_rescheduled_job_waits_until_due(engine: AsyncEngine) -> None:
    """A job rescheduled into the future is not claimable until then."""
    store = Store(engine)
    await _insert(store, "m-later")
    async with store.write() as session:
        (job,) = await jobs.claim(session, lane="send", worker_id="w", limit=1, lease_seconds=60)
        later = datetime.now(UTC) + timedelta(hours=1)
        await jobs.apply(session, job, "w", Transition(fate="retry", run_at=later))
    async with store.write() as session:
        assert (
            await jobs.claim(session, lane="send", worker_id="w", limit=1, lease_seconds=60) == []
        )
        due = await jobs.next_due_by_lane(session, ["send", "status"])
    assert due["status"] is None
    assert due["send"] is not None
    assert due["send"] > datetime.now(UTC) + timedelta(minutes=59)


async def test_released_job_keeps_its_attempt_budget(engine: AsyncEngine) -> None:
    """A job handed back on shutdown is due at once and the interrupted try is not counted."""
    store = Store(engine)
    await _insert(store, "m-release")
    async with store.write() as session:
        (job,) = await jobs.claim(session, lane="send", worker_id="w", limit=1, lease_seconds=60)
        assert await jobs.release(session, "w", [job.id]) == 1
    async with store.write() as session:
        (again,) = await jobs.claim(session, lane="send", worker_id="w2", limit=1, lease_seconds=60)
    assert again.attempts == 1


async def test_singletons_are_unique_while_open(engine: AsyncEngine) -> None:
    """A second probe of the same account is not queued while the first is open."""
    store = Store(engine)
    probe = NewJob(kind="probe", lane="admin", run_at=datetime.now(UTC), singleton_key="probe:1")
    async with store.write() as session:
        assert await jobs.enqueue(session, probe) is not None
        assert await jobs.enqueue(session, probe) is None
        (job,) = await jobs.claim(session, lane="admin", worker_id="w", limit=1, lease_seconds=60)
        await jobs.apply(session, job, "w", Transition(fate="done", enqueue=(probe,)))
        assert await jobs.counts(session) == {"probe:done": 1, "probe:queued": 1}


async def test_singletons_survive_a_generic_plan(engine: AsyncEngine) -> None:
    """PostgreSQL switches a prepared statement to a generic plan after a few runs; there the
    partial index's predicate must be matched from literals, not bound parameters (seen in the
    scale-out test: "no unique or exclusion constraint matching the ON CONFLICT specification"
    once a worker had enqueued enough singletons). Forced here so it is not left to chance."""
    from sqlalchemy import text

    store = Store(engine)
    async with store.write() as session:
        if engine.dialect.name == "postgresql":
            await session.execute(text("SET plan_cache_mode = force_generic_plan"))
        for n in range(8):
            probe = NewJob(
                kind="probe", lane="admin", run_at=datetime.now(UTC), singleton_key=f"probe:{n % 2}"
            )
            added = await jobs.enqueue(session, probe)
            assert (added is not None) == (n < 2), n


async def test_a_running_lease_is_not_reaped_before_it_ends(engine: AsyncEngine) -> None:
    """A claimed job whose lease runs 60 s is not put back by the reaper a moment later: on
    SQLite `now + lease` was once computed by SQLite as a number, which compared below every
    date, so every running job was reclaimed at once and ran twice."""
    store = Store(engine)
    await _insert(store, "m-live")
    async with store.write() as session:
        (job,) = await jobs.claim(session, lane="send", worker_id="w", limit=1, lease_seconds=60)
    await asyncio.sleep(0.05)
    async with store.write() as session:
        assert await jobs.reap(session) == 0
        assert await jobs.renew(session, "w", [job], lease_seconds=60) == 1
        assert await jobs.reap(session) == 0


async def test_statements_and_commits_are_counted_for_metrics(engine: AsyncEngine) -> None:
    """/metrics shows what the database is asked to do (castbridge_db_statements_total by
    verb, castbridge_db_commits_total), so an operator sees the cost per message."""
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    store = Store(engine)
    inserts, commits = (
        sample("castbridge_db_statements_total", verb="insert"),
        sample("castbridge_db_commits_total"),
    )
    await _insert(store, "m-counted")
    assert sample("castbridge_db_statements_total", verb="insert") >= inserts + 2  # message, job
    assert sample("castbridge_db_commits_total") == commits + 1


def test_a_job_kind_longer_than_its_column_is_refused_on_every_database() -> None:
    """PostgreSQL refuses a 17-character kind where SQLite stores it (a `register_webhooks`
    job once crashed castbridge's start on PostgreSQL only): refused before any SQL."""
    import pytest

    with pytest.raises(ValueError, match="16 characters"):
        NewJob(kind="register_webhooks", lane="admin", run_at=datetime.now(UTC))
