"""Group commit: concurrent intake writes share transactions, yet each is answered only for what
was committed, a bad write sinks no other, and a write that cannot start in time is withdrawn
untouched (StoreBusy, the 429 HighLevel retries). On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from castbridge.store import messages
from castbridge.store.db import Store, StoreBusy
from castbridge.store.group import GroupCommit
from castbridge.store.models import Message
from tests.store.test_jobs import _message, _send


def _insert(ghl_id: str) -> Callable[[AsyncSession], Awaitable[messages.Inserted]]:
    async def work(session: AsyncSession) -> messages.Inserted:
        return await messages.insert_with_job(session, _message(ghl_id), _send())

    return work


async def _stored(store: Store) -> int:
    async with store.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Message)) or 0)


async def test_concurrent_writes_share_commits_and_each_gets_its_own_result(
    engine: AsyncEngine,
) -> None:
    """100 writes submitted at once are all stored, each answered with its own row (a repeat
    within the batch as a duplicate), in far fewer commits than writes."""
    store = Store(engine)
    group = GroupCommit(store, max_batch=64)
    commits = 0

    @event.listens_for(engine.sync_engine, "commit")
    def _count(_conn: object) -> None:
        nonlocal commits
        commits += 1

    ids = [f"m-{n}" for n in range(100)] + ["m-7"]
    results = await asyncio.gather(*(group.submit(_insert(i)) for i in ids))
    assert [r.message_id is None for r in results].count(True) == 1
    assert results[-1].conflict == "duplicate"
    assert len({r.message_id for r in results[:-1]}) == 100
    assert await _stored(store) == 100
    assert commits <= 5, commits


async def test_one_failing_write_does_not_sink_the_others(engine: AsyncEngine) -> None:
    """A write that raises gets its own error; the writes batched with it are still stored."""
    store = Store(engine)
    group = GroupCommit(store)

    async def broken(session: AsyncSession) -> None:
        await messages.insert_with_job(session, _message("m-broken"), _send())
        raise ValueError("a bug in one write")

    outcomes = await asyncio.gather(
        group.submit(_insert("m-a")),
        group.submit(broken),
        group.submit(_insert("m-b")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], ValueError)
    for stored_fine in (outcomes[0], outcomes[2]):
        assert isinstance(stored_fine, messages.Inserted)
        assert stored_fine.message_id
    async with store.read() as session:
        stored = set(await session.scalars(select(Message.ghl_message_id)))
    assert stored == {"m-a", "m-b"}  # the broken write's own row was rolled back


async def test_a_write_that_cannot_start_in_time_is_withdrawn_untouched(
    engine: AsyncEngine,
) -> None:
    """While another writer holds SQLite's write lock, a submit with a deadline answers
    StoreBusy and its row is never written later either."""
    store = Store(engine)
    if not store.sqlite:
        pytest.skip("only SQLite serialises writers")
    group = GroupCommit(store)
    release = asyncio.Event()

    async def hold_lock() -> None:
        async with store.write():
            await release.wait()

    holder = asyncio.create_task(hold_lock())
    await asyncio.sleep(0.05)
    with pytest.raises(StoreBusy):
        await group.submit(_insert("m-late"), wait_at_most=0.2)
    release.set()
    await holder
    await group.submit(_insert("m-next"))
    async with store.read() as session:
        stored = set(await session.scalars(select(Message.ghl_message_id)))
    assert stored == {"m-next"}
