"""Rate-limit buckets shared by every process through PostgreSQL, on the database's clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from castbridge.limits import DatabasePacer, Limit, Throttled, holding
from castbridge.store.db import create_sessionmaker


@pytest.fixture
def pg_engine(engine: AsyncEngine, database: dict[str, Any]) -> AsyncEngine:
    if engine.dialect.name != "postgresql":
        pytest.skip("shared buckets live in PostgreSQL (SQLite is one process)")
    return engine


async def test_two_pacers_share_one_budget(pg_engine: AsyncEngine) -> None:
    """Two pacers (two processes' worth) on one database take 5 tokens of a burst of 5 between
    them, then both are refused with the time until the next token."""
    limit = Limit(rate=1.0, burst=5.0)
    pacers = [DatabasePacer(create_sessionmaker(pg_engine)) for _ in range(2)]
    results = await asyncio.gather(
        *(pacers[n % 2].take("acct:test", limit) for n in range(8)), return_exceptions=True
    )
    taken = [r for r in results if r is None]
    refused = [r for r in results if isinstance(r, Throttled)]
    assert (len(taken), len(refused)) == (5, 3)
    assert all(0 < r.wait <= 1.0 for r in refused)


async def test_contended_takes_never_refuse_while_tokens_remain(pg_engine: AsyncEngine) -> None:
    """Many takes waiting on the same row at once: each is judged on the clock at the moment it
    holds the row, so one that waited behind another is not taken for a paused bucket (before
    the fix, a take whose clock was read before its wait saw a newer `updated_at` and was
    refused with tokens left). Exactly the burst is taken, however the waits interleave."""
    burst = 20
    limit = Limit(rate=0.001, burst=float(burst))
    pacers = [DatabasePacer(create_sessionmaker(pg_engine)) for _ in range(4)]
    await pacers[0].take("acct:contended", limit)  # the row exists: every take contends on it
    for _ in range(3):
        results = await asyncio.gather(
            *(pacers[n % 4].take("acct:contended", limit) for n in range(burst)),
            return_exceptions=True,
        )
        assert not [r for r in results if not (r is None or isinstance(r, Throttled))]
        taken = sum(1 for r in results if r is None)
        assert taken == burst - 1, taken
        # Refill by hand for the next round (the rate would take hours).
        async with create_sessionmaker(pg_engine).begin() as session:
            await session.execute(
                text("UPDATE rate_buckets SET tokens = :t WHERE key = 'acct:contended'"),
                {"t": float(burst - 1)},
            )


async def test_a_pause_holds_everyone_back(pg_engine: AsyncEngine) -> None:
    """A gateway's 429 pauses the bucket for every process until Retry-After has passed."""
    limit = Limit(rate=100.0, burst=100.0)
    pacer = DatabasePacer(create_sessionmaker(pg_engine))
    await pacer.take("ip:test", limit)
    await DatabasePacer(create_sessionmaker(pg_engine)).pause("ip:test", limit, 0.5)
    with pytest.raises(Throttled) as caught:
        await pacer.take("ip:test", limit)
    assert 0.3 < caught.value.wait <= 0.6
    await asyncio.sleep(caught.value.wait + 0.05)
    await pacer.take("ip:test", limit)


async def test_a_bulk_above_the_burst_goes_into_debt(pg_engine: AsyncEngine) -> None:
    """A cost above the burst passes a full bucket and leaves it in debt."""
    limit = Limit(rate=10.0, burst=5.0)
    pacer = DatabasePacer(create_sessionmaker(pg_engine))
    await pacer.take("acct:bulk", limit, cost=20)
    with pytest.raises(Throttled) as caught:
        await pacer.take("acct:bulk", limit)
    assert caught.value.wait >= 1.5  # 15 tokens of debt plus one, at 10/s


async def test_a_refused_job_gets_the_next_token_before_another_process(
    pg_engine: AsyncEngine,
) -> None:
    """A job refused on an empty shared bucket has the next token booked for it: a take by
    another process at the moment the bucket refills is refused, and the job, back when told,
    takes its token without asking the database again. Before, the other process took it."""
    limit = Limit(rate=5.0, burst=1.0)  # one token every 0.2 s
    ours, theirs = (DatabasePacer(create_sessionmaker(pg_engine)) for _ in range(2))
    await theirs.take("acct:fair", limit)
    with holding("job:b"), pytest.raises(Throttled) as refused:
        await ours.take("acct:fair", limit)
    assert refused.value.reserved
    assert 0 < refused.value.wait <= 0.21  # a token, and the margin to come back after it
    await asyncio.sleep(refused.value.wait + 0.01)
    with pytest.raises(Throttled) as later:
        await theirs.take("acct:fair", limit)  # the refill went to job:b
    assert 0.1 < later.value.wait <= 0.21
    with holding("job:b"):
        await ours.take("acct:fair", limit)


async def test_bookings_stop_a_burst_ahead(pg_engine: AsyncEngine) -> None:
    """A herd of due jobs books at most two tokens ahead; the rest are refused."""
    limit = Limit(rate=2.0, burst=4.0)
    pacer = DatabasePacer(create_sessionmaker(pg_engine))
    await pacer.take("acct:herd", limit, cost=4)
    booked = []
    for n in range(4):
        with holding(f"job:{n}"), pytest.raises(Throttled) as refused:
            await pacer.take("acct:herd", limit)
        booked.append(refused.value.reserved)
    assert booked == [True, True, False, False]


async def test_a_booking_is_not_let_through_before_its_token_exists(pg_engine: AsyncEngine) -> None:
    """The refused take waited for the row behind another transaction: its booking falls due
    that long after the take began, on the database's clock. Before the fix it was timed from
    when the take began, so the job came back and sent before its token existed (the gateway
    answered 429 in the four-process test)."""
    limit = Limit(rate=5.0, burst=1.0)  # one token every 0.2 s
    pacer = DatabasePacer(create_sessionmaker(pg_engine))
    await pacer.take("acct:early", limit)
    async with create_sessionmaker(pg_engine).begin() as blocker:
        # As another process's take does: a new version of the row, so the waiting take is
        # judged again, on the clock, once it gets the row.
        await blocker.execute(
            text("UPDATE rate_buckets SET tokens = tokens WHERE key = 'acct:early'")
        )
        waiting = asyncio.create_task(_booked(pacer, limit))
        await asyncio.sleep(0.15)
    refused = await waiting
    assert refused.reserved
    with holding("job:b"), pytest.raises(Throttled) as again:
        await pacer.take("acct:early", limit)  # back at once: 0.05 s too early
    assert again.value.reserved
    assert again.value.wait > 0.02


async def _booked(pacer: DatabasePacer, limit: Limit) -> Throttled:
    with holding("job:b"), pytest.raises(Throttled) as refused:
        await pacer.take("acct:early", limit)
    return refused.value


async def test_a_job_back_late_asks_the_database_again(pg_engine: AsyncEngine) -> None:
    """A booking is spent only when its token is due: a job back well after it (claimed behind
    older jobs) would otherwise send on top of the tokens other processes took meanwhile."""
    limit = Limit(rate=5.0, burst=1.0)
    ours, theirs = (DatabasePacer(create_sessionmaker(pg_engine)) for _ in range(2))
    await theirs.take("acct:late", limit)
    with holding("job:b"), pytest.raises(Throttled) as refused:
        await ours.take("acct:late", limit)
    await asyncio.sleep(refused.value.wait + 0.4)
    await theirs.take("acct:late", limit)  # the token there is now
    with holding("job:b"), pytest.raises(Throttled):
        await ours.take("acct:late", limit)
