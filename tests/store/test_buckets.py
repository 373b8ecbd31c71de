"""Rate-limit buckets shared by every process through PostgreSQL, on the database's clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from castbridge.limits import DatabasePacer, Limit, Throttled
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
