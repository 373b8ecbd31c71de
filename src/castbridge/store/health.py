"""Read-only queries behind the settings page's delivery health: per-day outcomes, traffic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.store.models import Message

# The most rows one health read looks at: a very busy location's chart is then drawn from its
# latest messages rather than scanning a week of them per page load.
MAX_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    created_at: datetime
    finished_at: datetime | None
    phone_hash: str | None


async def outcomes_since(
    session: AsyncSession, location_ids: Sequence[str], since: datetime
) -> dict[str, list[Outcome]]:
    """Each location's messages created since `since`, newest first."""
    if not location_ids:
        return {}
    rows = await session.execute(
        select(
            Message.location_id,
            Message.status,
            Message.created_at,
            Message.finished_at,
            Message.phone_hash,
        )
        .where(Message.location_id.in_(list(location_ids)), Message.created_at >= since)
        .order_by(Message.id.desc())
        .limit(MAX_ROWS)
    )
    found: dict[str, list[Outcome]] = {location: [] for location in location_ids}
    for location, status, created, finished, phone_hash in rows:
        found[location].append(Outcome(status, created, finished, phone_hash))
    return found


async def count_before(session: AsyncSession, location_id: str, before: datetime) -> int:
    """Messages a location received before `before` (did HighLevel ever send here?)."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.location_id == location_id, Message.created_at < before)
        )
        or 0
    )
