"""SQL for opt-outs: who must not be texted by a location, since when and why, and what
HighLevel's contact DND was last set to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.secrets import SealedPhone
from castbridge.store import dialect
from castbridge.store.models import OptOut
from castbridge.store.text import fit

SOURCES = ("keyword", "gateway", "import", "operator")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class OptOutChange:
    location_id: str
    phone: SealedPhone  # must be a valid E.164 number (it has a hash)
    opted_out: bool
    source: str
    detail: str
    at: datetime


async def record(session: AsyncSession, change: OptOutChange) -> int | None:
    """Record an opt-out or opt-in; the newest signal wins, so a STOP and a START handled out
    of order (a poll finding the older one later) end in the state the handset chose last.
    Returns the row id when the state was written, None when an equal or newer signal is
    already recorded."""
    if change.phone.hash is None:
        raise ValueError("an opt-out needs a valid phone number")
    now = utcnow()
    values = {
        "location_id": change.location_id,
        "phone_hash": change.phone.hash,
        "phone_enc": change.phone.enc,
        "phone_masked": change.phone.masked,
        "opted_out": change.opted_out,
        "source": change.source,
        "detail": fit(change.detail, 200) or "",
        "at": change.at,
        "ghl_dnd": None,
        "updated_at": now,
    }
    statement = dialect.insert(session, OptOut).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["location_id", "phone_hash"],
        set_={
            key: statement.excluded[key]
            for key in ("opted_out", "source", "detail", "at", "ghl_dnd", "updated_at")
        },
        where=OptOut.at <= statement.excluded.at,
    ).returning(OptOut.id)
    found = (await session.execute(statement)).scalar_one_or_none()
    return int(found) if found is not None else None


async def active(session: AsyncSession, location_id: str, phone_hash: str) -> OptOut | None:
    """The opt-out that forbids texting this number from this location, if any."""
    query = select(OptOut).where(
        OptOut.location_id == location_id,
        OptOut.phone_hash == phone_hash,
        OptOut.opted_out.is_(True),
    )
    return (await session.execute(query)).scalar_one_or_none()


async def get(session: AsyncSession, optout_id: int) -> OptOut | None:
    return await session.get(OptOut, optout_id)


async def set_ghl_dnd(session: AsyncSession, optout_id: int, state: str, at: datetime) -> None:
    """HighLevel's DND now says `state`, for the signal at `at` (a newer signal keeps its own)."""
    await session.execute(
        update(OptOut).where(OptOut.id == optout_id, OptOut.at == at).values(ghl_dnd=state)
    )


async def listing(
    session: AsyncSession,
    *,
    location_id: str | None = None,
    include_opted_in: bool = False,
    limit: int | None = None,
) -> list[OptOut]:
    query = select(OptOut).order_by(OptOut.location_id, OptOut.at.desc())
    if location_id is not None:
        query = query.where(OptOut.location_id == location_id)
    if not include_opted_in:
        query = query.where(OptOut.opted_out.is_(True))
    if limit is not None:
        query = query.limit(limit)
    return list((await session.execute(query)).scalars())


async def counts(session: AsyncSession, location_ids: Sequence[str]) -> dict[str, int]:
    """Opted-out numbers per location."""
    if not location_ids:
        return {}
    rows = await session.execute(
        select(OptOut.location_id, func.count())
        .where(OptOut.location_id.in_(list(location_ids)), OptOut.opted_out.is_(True))
        .group_by(OptOut.location_id)
    )
    return {location: int(n) for location, n in rows}
