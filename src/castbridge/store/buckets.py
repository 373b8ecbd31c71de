"""Shared token buckets as rows (`rate_buckets`), refilled and spent with the database's clock.

One statement per take: the row is locked, refilled from the time elapsed on the *database*
clock (hosts' clocks may differ), and spent only when enough tokens are there. A paused bucket
has `updated_at` in the future: it refills nothing until then.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Parameters are cast: asyncpg cannot infer the type of `$1 - $2` on its own.
# The clock is read in the locking scan itself, not in a CTE of its own: a take that waited
# for the row behind another one is re-evaluated on the row's new version when it gets the
# lock, and so is the clock then. Read before the wait, it would be older than the `updated_at`
# the other take just wrote, and the bucket would look paused while it still had tokens.
_TAKE = text(
    """
    WITH b AS (
        SELECT r.key, r.tokens, r.updated_at,
               extract(epoch FROM clock_timestamp())::float8 AS e
        FROM rate_buckets r WHERE r.key = :key FOR UPDATE OF r
    ),
    c AS (
        SELECT b.key, b.updated_at, b.e, CAST(:burst AS float8) AS burst,
               CAST(:cost AS float8) AS cost,
               LEAST(CAST(:burst AS float8),
                     b.tokens + GREATEST(0, b.e - b.updated_at) * CAST(:rate AS float8)) AS avail
        FROM b
    ),
    u AS (
        UPDATE rate_buckets r SET tokens = c.avail - c.cost, updated_at = c.e
        FROM c
        WHERE r.key = c.key AND c.updated_at <= c.e
          AND (c.avail + 1e-9 >= LEAST(c.cost, c.burst)
               OR (CAST(:reserve AS boolean)
                   AND c.avail - c.cost >= -CAST(:depth AS float8) - 1e-9
                   AND (LEAST(c.cost, c.burst) - c.avail) / CAST(:rate AS float8)
                       <= CAST(:horizon AS float8)))
        RETURNING r.key
    )
    SELECT c.avail, c.updated_at, c.e, (SELECT count(*) FROM u) AS taken FROM c
    """
)

_CREATE = text(
    """
    INSERT INTO rate_buckets (key, tokens, updated_at)
    VALUES (:key, CAST(:burst AS float8) - CAST(:cost AS float8),
            extract(epoch FROM clock_timestamp()))
    ON CONFLICT (key) DO NOTHING
    RETURNING key
    """
)

_PAUSE = text(
    """
    INSERT INTO rate_buckets (key, tokens, updated_at)
    VALUES (:key, 0, extract(epoch FROM clock_timestamp()) + CAST(:seconds AS float8))
    ON CONFLICT (key) DO UPDATE SET tokens = 0,
        updated_at = GREATEST(rate_buckets.updated_at, EXCLUDED.updated_at)
    """
)


async def take(
    session: AsyncSession,
    key: str,
    rate: float,
    burst: float,
    cost: float,
    *,
    book: tuple[float, float] | None = None,
) -> tuple[float, bool]:
    """Spend `cost` tokens of `key` and return (0, False), or return the seconds until they
    exist. With `book` = (depth, horizon), a refusal on an unpaused bucket that would leave it
    at most `depth` tokens in debt, due within `horizon` seconds, spends the tokens anyway,
    booked for the caller: it returns (seconds, True) and the caller may send then without
    asking again."""
    depth, horizon = book if book is not None else (0.0, 0.0)
    params = {
        "key": key,
        "rate": rate,
        "burst": burst,
        "cost": cost,
        "reserve": book is not None,
        "depth": depth,
        "horizon": horizon,
    }
    row = (await session.execute(_TAKE, params)).one_or_none()
    if row is None:
        if (await session.execute(_CREATE, params)).scalar_one_or_none() is not None:
            return 0.0, False
        row = (await session.execute(_TAKE, params)).one()  # created concurrently: try again
    need = min(cost, burst)
    short = max(0.0, need - float(row.avail))
    if row.taken:
        return (short / rate, True) if short > 1e-9 else (0.0, False)
    paused_for = max(0.0, float(row.updated_at) - float(row.e))
    return paused_for + short / rate, False


async def pause(session: AsyncSession, key: str, burst: float, seconds: float) -> None:
    await session.execute(_PAUSE, {"key": key, "seconds": max(0.0, seconds)})
