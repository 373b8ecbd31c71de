"""Group commit: concurrent intake writes share transactions, yet each is answered only for what
was committed, a bad write sinks no other, and a write that cannot start in time is withdrawn
untouched (StoreBusy, the 429 HighLevel retries). On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import cast

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from castbridge.store import jobs, messages
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


async def _store_many(
    session: AsyncSession, items: list[tuple[str, str]]
) -> list[messages.Inserted]:
    return await messages.insert_many(
        session, [(_message(ghl_id, location), _send(location)) for ghl_id, location in items]
    )


async def test_items_for_one_batch_function_share_its_statements_and_read_as_one_by_one(
    engine: AsyncEngine,
) -> None:
    """56 webhooks queued together are stored in one SELECT, one INSERT of messages and one of
    jobs (not two statements each), and each answer is what storing them in order would give:
    a repeat inside the batch or of a stored row is a duplicate, a messageId stored or taken
    earlier in the batch by another location is a conflict, and neither gets a job."""
    store = Store(engine)
    async with store.write() as session:
        await _store_many(session, [("m-old", "loc-1"), ("m-other", "loc-2")])
    group = GroupCommit(store, max_batch=64)
    statements: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        statements.append(sql)

    fresh = [(f"m-{n}", "loc-1") for n in range(50)]
    odd = [
        ("m-old", "loc-1"),
        ("m-other", "loc-1"),
        ("m-twice", "loc-1"),
        ("m-twice", "loc-1"),
        ("m-split", "loc-1"),
        ("m-split", "loc-2"),
    ]
    results = await asyncio.gather(
        *(group.submit_item(_store_many, item) for item in [*fresh, *odd])
    )
    event.remove(engine.sync_engine, "before_cursor_execute", _count)

    assert all(r.message_id is not None for r in results[:50])
    assert [r.conflict if r.message_id is None else "stored" for r in results[50:]] == [
        "duplicate",
        "other_location",
        "stored",
        "duplicate",
        "stored",
        "other_location",
    ]
    assert len({r.message_id for r in results if r.message_id is not None}) == 52
    data = [s for s in statements if not s.lstrip().upper().startswith(("BEGIN", "COMMIT"))]
    # PostgreSQL adds the NOTIFY that wakes the workers, once for the whole batch.
    assert len(data) <= (3 if store.sqlite else 4), data
    async with store.read() as session:
        assert await _stored(store) == 54
        by_location = dict(
            (
                await session.execute(
                    select(Message.location_id, func.count()).group_by(Message.location_id)
                )
            ).all()
        )
        assert by_location == {"loc-1": 53, "loc-2": 1}
        assert await jobs.counts(session) == {"send:queued": 54}


async def test_a_bad_item_in_a_batch_does_not_sink_the_items_stored_with_it(
    engine: AsyncEngine,
) -> None:
    """One multi-row INSERT holds the whole batch, so a row the database refuses fails it; the
    batch is then stored item by item and only the bad item hears of the error."""
    store = Store(engine)
    group = GroupCommit(store)

    async def store_posts(
        session: AsyncSession, posts: list[messages.NewMessage]
    ) -> list[messages.Inserted]:
        return await messages.insert_many(session, [(post, _send()) for post in posts])

    broken = replace(_message("m-broken"), text=cast(str, None))  # messages.text is NOT NULL
    outcomes = await asyncio.gather(
        group.submit_item(store_posts, _message("m-a")),
        group.submit_item(store_posts, broken),
        group.submit_item(store_posts, _message("m-b")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], IntegrityError), outcomes[1]
    assert all(isinstance(o, messages.Inserted) and o.message_id for o in outcomes[::2])
    async with store.read() as session:
        stored = set(await session.scalars(select(Message.ghl_message_id)))
        assert stored == {"m-a", "m-b"}
        assert await jobs.counts(session) == {"send:queued": 2}
