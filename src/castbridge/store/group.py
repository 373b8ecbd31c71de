"""Group commit: concurrent small writes (webhook intake) share one transaction and one fsync.

A webhook is acknowledged only once its row is committed, so every intake pays for a commit.
On SQLite with `synchronous=FULL` a commit is an fsync and the writer is one at a time: taken
one by one, 256 concurrent webhooks queue behind each other's BEGIN/COMMIT and the store,
not the work, sets the rate. Here the writes that arrive while a transaction is open wait
for the next one, which takes all of them (up to `max_batch`): each caller still gets its own
result only after the commit that holds its row, so nothing is acknowledged early.

A write is either a function of the session (`submit`) or an item for a batch function
(`submit_item`): consecutive items for the same batch function reach it together, so a batch of
64 webhooks can be stored in a few statements instead of a few per webhook.

When a batch fails for a reason that is not "the database is unavailable" (one bad row),
its writes are retried one per transaction, so one poisoned write never sinks the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.store.db import Store, StoreBusy, unavailable

T = TypeVar("T")
ItemT = TypeVar("ItemT")

# Stores a list of items in the caller's transaction; one result per item, in order.
BatchWork = Callable[[AsyncSession, list[ItemT]], Awaitable[list[T]]]

# Writes per transaction at most: enough to amortise one fsync, few enough that the write
# lock is never held long (the worker's writes take turns with the batches).
MAX_BATCH = 64


@dataclass(eq=False, slots=True)
class _Pending(Generic[T]):
    work: Callable[[AsyncSession], Awaitable[T]] | None
    done: asyncio.Future[T]
    batch: BatchWork[Any, T] | None = None
    item: Any = None
    taken: bool = field(default=False)

    async def alone(self, session: AsyncSession) -> T:
        if self.work is not None:
            return await self.work(session)
        assert self.batch is not None
        return (await self.batch(session, [self.item]))[0]


class GroupCommit:
    """Runs submitted writes in shared transactions on `store`, in arrival order."""

    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: deque[_Pending[Any]] = deque()
        self._flusher: asyncio.Task[None] | None = None

    async def submit(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, wait_at_most: float | None = None
    ) -> T:
        """Run `work(session)` in the next shared transaction and return its result once that
        transaction is committed. Raises `StoreBusy` when the write could not start within
        `wait_at_most` seconds (nothing was written), or whatever the write itself raised."""
        return await self._wait(self._enqueue(work), wait_at_most)

    async def submit_item(
        self, batch: BatchWork[ItemT, T], item: ItemT, *, wait_at_most: float | None = None
    ) -> T:
        """`submit` for an item that `batch` stores together with the other items queued for
        it: its result once the transaction that holds it is committed."""
        return await self._wait(self._enqueue(None, batch, item), wait_at_most)

    def _enqueue(
        self,
        work: Callable[[AsyncSession], Awaitable[T]] | None,
        batch: BatchWork[Any, T] | None = None,
        item: Any = None,
    ) -> _Pending[T]:
        pending: _Pending[T] = _Pending(
            work, asyncio.get_running_loop().create_future(), batch, item
        )
        self._queue.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return pending

    async def _wait(self, pending: _Pending[T], wait_at_most: float | None) -> T:
        try:
            return await asyncio.wait_for(asyncio.shield(pending.done), wait_at_most)
        except TimeoutError:
            if not pending.taken:
                self._queue.remove(pending)
                raise StoreBusy("the database is busy") from None
            # Already inside a transaction: its outcome is moments away and must be reported
            # as it is (a committed row answered "busy" would make HighLevel send it again).
            return await pending.done

    async def _flush(self) -> None:
        while self._queue:
            try:
                await self._one_batch()
            except Exception:  # pragma: no cover - _one_batch settles every future itself
                continue

    async def _one_batch(self) -> None:
        batch: list[_Pending[Any]] = []
        results: list[Any] = []
        try:
            async with self._store.write() as session:
                # Taken only once the write lock is held: a write that times out while the
                # lock is busy is still in the queue and can be withdrawn untouched.
                while self._queue and len(batch) < self._max_batch:
                    pending = self._queue.popleft()
                    pending.taken = True
                    batch.append(pending)
                results = await _run(session, batch)
        except asyncio.CancelledError as exc:
            # Shutting down mid-batch: nothing of it was committed, and every caller hears so.
            for pending in batch:
                _settle(pending, exc=exc)
            raise
        except Exception as exc:
            if unavailable(exc) or len(batch) <= 1:
                for pending in batch:
                    _settle(pending, exc=exc)
                return
            await self._one_by_one(batch)
            return
        for pending, result in zip(batch, results, strict=True):
            _settle(pending, result=result)

    async def _one_by_one(self, batch: list[_Pending[Any]]) -> None:
        for pending in batch:
            try:
                async with self._store.write() as session:
                    result = await pending.alone(session)
            except Exception as exc:
                _settle(pending, exc=exc)
            else:
                _settle(pending, result=result)


async def _run(session: AsyncSession, batch: list[_Pending[Any]]) -> list[Any]:
    """Each write's result in order; a run of items for one batch function goes in one call."""
    results: list[Any] = []
    start = 0
    while start < len(batch):
        first = batch[start]
        end = start + 1
        if first.batch is None:
            results.append(await first.alone(session))
        else:
            # `==`, not `is`: a bound method is a new object each time it is looked up.
            while end < len(batch) and batch[end].batch == first.batch:
                end += 1
            items = [pending.item for pending in batch[start:end]]
            stored = await first.batch(session, items)
            if len(stored) != len(items):  # pragma: no cover - a batch function's contract
                raise RuntimeError("a batch write returned the wrong number of results")
            results.extend(stored)
        start = end
    return results


def _settle(
    pending: _Pending[Any], *, result: Any = None, exc: BaseException | None = None
) -> None:
    if pending.done.done():  # pragma: no cover - a future is settled once
        return
    if exc is not None:
        pending.done.set_exception(exc)
    else:
        pending.done.set_result(result)
