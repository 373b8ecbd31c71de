"""Opt-outs as castbridge keeps them: recorded from a STOP reply, a gateway's signal, an import
or an operator; mirrored onto the HighLevel contact's SMS DND by a job; and the sentence a
refused send is reported with."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.store import jobs
from castbridge.store import optouts as optout_store
from castbridge.store.jobs import NewJob
from castbridge.store.models import OptOut
from castbridge.store.optouts import OptOutChange

OPTED_OUT_CODE = "OPTED_OUT"


def utcnow() -> datetime:
    return datetime.now(UTC)


def dnd_job(optout_id: int, location_id: str) -> NewJob:
    """Mirror the opt-out's current state onto HighLevel (one queued per opt-out row: the job
    reads the state when it runs, so a STOP and a START in quick succession end right)."""
    return NewJob(
        kind="dnd",
        lane="inbound",
        run_at=utcnow(),
        location_id=location_id,
        singleton_key=f"dnd:{optout_id}",
        payload={"optout_id": optout_id},
    )


async def record(session: AsyncSession, change: OptOutChange) -> int | None:
    """Record the change and queue the DND update; None when a newer signal already won."""
    optout_id = await optout_store.record(session, change)
    if optout_id is not None:
        await jobs.enqueue(session, dnd_job(optout_id, change.location_id))
    return optout_id


def describe(row: OptOut) -> str:
    """How the opt-out happened, for HighLevel's DND message and the refusal sentence."""
    day = row.at.date().isoformat()
    if row.source == "keyword":
        return f"{row.detail or 'STOP'} received on {day}"
    if row.source == "gateway":
        return f"reported by {row.detail or 'the SMS gateway'} on {day}"
    if row.source == "import":
        return f"imported from a suppression list on {day}"
    return f"set by an operator on {day}"


def refusal_text(row: OptOut) -> str:
    return (
        f"The recipient opted out of SMS from this business ({describe(row)}). It was not "
        "sent; they can text START to opt back in."
    )
