"""Rate limits that never hold a worker: token buckets that refuse (`Throttled`) instead of wait.

Every outgoing call (a gateway send or poll, a HighLevel request) takes tokens from a bucket
named by what is limited: a gateway account (`acct:<id>`), an egress IP towards a gateway
(`ip:<gateway>`), a HighLevel location (`ghl:<locationId>`). When the bucket is empty the
`Pacer` raises `Throttled` with the seconds until it refills; the request has not left, so the
caller (a job) is simply rescheduled for then and the worker slot goes to other work
(ghl.md §12, gateways.md §6).

Two pacers: `LocalPacer` keeps buckets in this process (the single-process SQLite default);
`DatabasePacer` keeps them in PostgreSQL rows so every castbridge process shares one budget.
`BlockingPacer` wraps either for the CLI, where waiting is what a person expects.

A refusal inside `holding(job)` may also book the next token for that job (both pacers; at
most two tokens and one second ahead): the job waits for it in place and gets it, so a job of
another location that falls due just as the bucket refills cannot take it. Without this, a
message refused behind a backlog pre-spaced at the account's rate was requeued a little after
each refill and lost every refill to the backlog's next message (issue 13). A booking is spent
only when due, within HOLD_GRACE_SECONDS; later, its token is lost and the holder asks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# Buckets are small: at most this many distinct keys are kept in memory per process.
MAX_LOCAL_BUCKETS = 100_000
# A holder is told to come back this much after its booked token is due, never before it:
# the queue's wall clock and the pacer's monotonic one are read at slightly different moments,
# and a booking is only ever honoured once it is due (early would be over the rate).
HOLD_MARGIN_SECONDS = 0.005
# A booking is honoured only this long after its token fell due. A job back later (claimed
# behind older jobs, or never: cancelled, uninstalled, refused at another bucket first) asks
# like everyone else and its token stays spent: honoured late, it would send on top of the
# tokens taken meanwhile, a burst over the limit (the gateway's headroom is about half a
# second's worth; this keeps such bunching to a tenth of one).
HOLD_GRACE_SECONDS = 0.1
# Bookings go at most this many tokens and this many seconds ahead: the holder waits for its
# token in place (the worker slot stays taken), so that wait must stay short, and a herd of due
# jobs must not book the bucket out for a message arriving after it. Two, whatever the burst:
# once a backlog's next job has booked (its pre-spaced schedule falls due just as the bucket
# refills), a newcomer must still be able to book the token after it. With a burst of 1.5 and
# the depth capped at the burst, only the backlog ever booked and the newcomer waited for all
# of it. Bookings never let anything over the rate, whatever their depth: each is sent when
# its token is due.
HOLD_DEPTH_TOKENS = 2.0
HOLD_HORIZON_SECONDS = 1.0

# Who is asking: a job's id while it sends, so a refusal can book the next token for it.
_holder: ContextVar[str | None] = ContextVar("castbridge_pacing_holder", default=None)


@contextlib.contextmanager
def holding(holder: str | None) -> Iterator[None]:
    """Takes in this block are made for `holder` (a job that will come back when told)."""
    token = _holder.set(holder)
    try:
        yield
    finally:
        _holder.reset(token)


@dataclass(frozen=True, slots=True)
class Limit:
    """`rate` tokens per second, at most `burst` banked."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a limit needs rate > 0 and burst >= 1")


class Throttled(Exception):
    """The bucket `key` has no tokens now; try again in `wait` seconds. Nothing was sent.

    `reserved`: the token due in `wait` seconds is booked for the holder that asked; asking
    again then (within HOLD_GRACE_SECONDS) gets it."""

    def __init__(self, key: str, wait: float, *, reserved: bool = False) -> None:
        super().__init__(f"rate limit {key}: retry in {wait:.3f} s")
        self.key = key
        self.wait = max(0.0, wait)
        self.reserved = reserved


class Pacer(Protocol):
    async def take(self, key: str, limit: Limit, cost: float = 1.0) -> None:
        """Take `cost` tokens or raise `Throttled`. A cost above the burst is allowed when the
        bucket is full and leaves it in debt, as a gateway meters a bulk of N messages."""
        ...

    async def pause(self, key: str, limit: Limit, seconds: float) -> None:
        """Empty the bucket and refill nothing for `seconds` (an upstream 429's Retry-After)."""
        ...


def _needed(limit: Limit, cost: float) -> float:
    return min(cost, limit.burst)


def _spend_booking(held: dict[Any, float], booking: Any, key: str, now: float) -> bool:
    """True when `booking` (a holder's) is due now and spent; raises `Throttled` while it is
    not yet due; False when there is none, or it came too late and was dropped."""
    due = held.get(booking)
    if due is None:
        return False
    if due > now:
        raise Throttled(key, due - now + HOLD_MARGIN_SECONDS, reserved=True)
    del held[booking]
    return now <= due + HOLD_GRACE_SECONDS


def _book(held: dict[Any, float], booking: Any, due: float, now: float) -> None:
    """Remember a booking, forgetting those whose grace has passed (their tokens stay spent)."""
    for gone in [b for b, at in held.items() if at < now - HOLD_GRACE_SECONDS]:
        del held[gone]
    held[booking] = due


def _bookable(tokens_after: float, wait: float) -> bool:
    return tokens_after >= -HOLD_DEPTH_TOKENS - 1e-9 and wait <= HOLD_HORIZON_SECONDS


@dataclass(slots=True)
class _Bucket:
    tokens: float  # below zero while tokens are booked for holders
    updated: float  # may lie in the future while paused
    held: dict[str, float] = field(default_factory=dict)  # holder -> when its token is due


class LocalPacer:
    """Buckets in this process. Correct for one process; use `DatabasePacer` for several."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str, limit: Limit, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_LOCAL_BUCKETS:
                self._buckets.clear()  # forgetting a bucket only ever grants a fresh burst
            bucket = self._buckets[key] = _Bucket(limit.burst, now)
        return bucket

    async def take(self, key: str, limit: Limit, cost: float = 1.0) -> None:
        now = self._clock()
        bucket = self._bucket(key, limit, now)
        if bucket.updated > now:
            raise Throttled(key, bucket.updated - now + _needed(limit, cost) / limit.rate)
        holder = _holder.get()
        if holder is not None and _spend_booking(bucket.held, holder, key, now):
            return  # its token was taken when it was booked
        bucket.tokens = min(limit.burst, bucket.tokens + (now - bucket.updated) * limit.rate)
        bucket.updated = now
        need = _needed(limit, cost)
        if bucket.tokens + 1e-9 < need:
            wait = (need - bucket.tokens) / limit.rate
            if holder is not None and _bookable(bucket.tokens - cost, wait):
                _book(bucket.held, holder, now + wait, now)
                bucket.tokens -= cost
                raise Throttled(key, wait + HOLD_MARGIN_SECONDS, reserved=True)
            raise Throttled(key, wait)
        bucket.tokens -= cost

    async def pause(self, key: str, limit: Limit, seconds: float) -> None:
        now = self._clock()
        bucket = self._bucket(key, limit, now)
        bucket.tokens = 0.0  # forgives the booked tokens too: their holders ask again
        bucket.held.clear()
        bucket.updated = max(bucket.updated, now + max(0.0, seconds))


class BlockingPacer:
    """Waits instead of raising: for the CLI and other callers that are not jobs."""

    def __init__(self, inner: Pacer, *, max_wait: float = 300.0) -> None:
        self._inner = inner
        self._max_wait = max_wait

    async def take(self, key: str, limit: Limit, cost: float = 1.0) -> None:
        waited = 0.0
        while True:
            try:
                await self._inner.take(key, limit, cost)
                return
            except Throttled as exc:
                if waited + exc.wait > self._max_wait:
                    raise
                await asyncio.sleep(exc.wait)
                waited += exc.wait

    async def pause(self, key: str, limit: Limit, seconds: float) -> None:
        await self._inner.pause(key, limit, seconds)


class DatabasePacer:
    """Buckets as rows in PostgreSQL, read and updated with the database's clock in one
    statement, so every process (and every host, whatever its clock) shares one budget."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        # Tokens booked in the database for jobs this process ran: (key, holder) -> when due.
        # A job claimed back by another process asks the database afresh there (and books
        # again if refused); the token booked here stays spent, which is only ever slower.
        self._held: dict[tuple[str, str], float] = {}

    async def take(self, key: str, limit: Limit, cost: float = 1.0) -> None:
        from castbridge.store import buckets

        holder = _holder.get()
        if holder is not None and _spend_booking(self._held, (key, holder), key, self._clock()):
            return
        async with self._sessions.begin() as session:
            wait, booked = await buckets.take(
                session,
                key,
                limit.rate,
                limit.burst,
                cost,
                book=(HOLD_DEPTH_TOKENS, HOLD_HORIZON_SECONDS) if holder is not None else None,
            )
        # Timed from now, after the statement: `wait` is counted from the database's clock when
        # the take got the row, which may be well after it began (it waited for the row behind
        # another take). Timed from before, the booking fell due early, over the rate.
        now = self._clock()
        if booked and holder is not None:
            _book(self._held, (key, holder), now + wait, now)
            raise Throttled(key, wait + HOLD_MARGIN_SECONDS, reserved=True)
        if wait > 0:
            raise Throttled(key, wait)

    async def pause(self, key: str, limit: Limit, seconds: float) -> None:
        from castbridge.store import buckets

        # The pause zeroes the row, forgiving what was booked: this process's holders ask
        # again. A pause made by another process is not seen here, so a holder of ours may
        # still send once into it (within a second of booking); the gateway's 429 then pauses
        # the bucket again and the job waits, as a send racing the 429 would without bookings.
        for held in [h for h in self._held if h[0] == key]:
            del self._held[held]
        async with self._sessions.begin() as session:
            await buckets.pause(session, key, limit.burst, seconds)


class TokenBucket:
    """A waiting bucket for code that paces itself in-process (the sandboxes' load helpers).

    Waiters are served in arrival order under one lock, so a burst of callers is spread evenly
    at `rate`. `pause(seconds)` empties the bucket and holds everyone back.
    """

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else 1.0)
        self._clock = clock
        self._tokens = self.burst
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: float = 1.0) -> None:
        if tokens > self.burst:
            raise ValueError(f"cannot take {tokens} tokens from a bucket of {self.burst}")
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= tokens:
                    self._tokens -= tokens
                    return
                await asyncio.sleep((tokens - self._tokens) / self.rate)

    def pause(self, seconds: float) -> None:
        now = self._clock()
        self._paused_until = max(self._paused_until, now + seconds)
        self._tokens = 0.0
        self._updated = max(self._updated, self._paused_until)
