"""SQL for messages, jobs, attempts and location settings (installations: installations.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from castbridge.secrets import SecretBox
from castbridge.store.models import Attempt, Job, LocationSettings, Message

ERROR_TEXT_LIMIT = 500

TERMINAL_MESSAGE_STATES = frozenset({"delivered", "failed", "unknown"})


def utcnow() -> datetime:
    return datetime.now(UTC)


def _dialect(session: AsyncSession) -> str:
    return str(session.get_bind().dialect.name)


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    """A dialect-specific INSERT so ON CONFLICT works on SQLite and PostgreSQL alike."""
    if _dialect(session) == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def truncate(text: str | None, limit: int = ERROR_TEXT_LIMIT) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


# --- intake ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewMessage:
    ghl_message_id: str
    location_id: str
    contact_id: str | None
    phone_raw: str
    phone_e164: str | None
    text: str
    attachments: list[str]
    encoding: str | None
    parts_estimate: int | None
    status: str  # "queued" for a sendable message, "failed" when refused at intake
    channel: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class NewJob:
    kind: str
    run_at: datetime
    payload: dict[str, Any]


async def insert_message_with_job(
    session: AsyncSession, message: NewMessage, job: NewJob
) -> int | None:
    """Insert the message and its first job in the caller's transaction.

    Returns the new message's id, or None when `ghl_message_id` was already stored: a repeated
    webhook then creates no second job, so it can never cause a second send.
    """
    now = utcnow()
    finished = now if message.status in TERMINAL_MESSAGE_STATES else None
    statement = (
        _insert(session, Message)
        .values(
            ghl_message_id=message.ghl_message_id,
            location_id=message.location_id,
            contact_id=message.contact_id,
            phone_raw=message.phone_raw,
            phone_e164=message.phone_e164,
            text=message.text,
            attachments=message.attachments,
            encoding=message.encoding,
            parts_estimate=message.parts_estimate,
            status=message.status,
            channel=message.channel,
            error_code=message.error_code,
            error_message=truncate(message.error_message),
            created_at=now,
            updated_at=now,
            finished_at=finished,
        )
        .on_conflict_do_nothing(index_elements=["ghl_message_id"])
        .returning(Message.id)
    )
    message_id = (await session.execute(statement)).scalar_one_or_none()
    if message_id is None:
        return None
    session.add(
        Job(
            kind=job.kind,
            message_id=message_id,
            state="queued",
            run_at=job.run_at,
            attempts=0,
            payload=job.payload,
            created_at=now,
            updated_at=now,
        )
    )
    await session.flush()
    return int(message_id)


# --- jobs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    kind: str
    message_id: int
    attempts: int  # including this claim: the fencing token for finishing the job
    payload: dict[str, Any]
    created_at: datetime


async def claim_jobs(
    session: AsyncSession, *, worker_id: str, limit: int, lease_seconds: float
) -> list[ClaimedJob]:
    """Atomically take up to `limit` due jobs, and any whose lease ran out (a crashed worker's).

    One UPDATE ... WHERE id IN (SELECT ... [FOR UPDATE SKIP LOCKED]) ... RETURNING: on SQLite the
    statement holds the single write lock, on PostgreSQL SKIP LOCKED keeps workers apart.
    """
    now = utcnow()
    due = or_(
        and_(Job.state == "queued", Job.run_at <= now),
        and_(Job.state == "running", Job.lease_until < now),
    )
    candidates = (
        select(Job.id)
        .where(due)
        .order_by(Job.run_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(Job)
        .where(Job.id.in_(candidates.scalar_subquery()))
        .where(due)
        .values(
            state="running",
            lease_until=now + timedelta(seconds=lease_seconds),
            worker_id=worker_id,
            attempts=Job.attempts + 1,
            updated_at=now,
        )
        .returning(Job.id, Job.kind, Job.message_id, Job.attempts, Job.payload, Job.created_at)
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(statement)).all()
    return [
        ClaimedJob(
            id=row.id,
            kind=row.kind,
            message_id=row.message_id,
            attempts=row.attempts,
            payload=dict(row.payload or {}),
            created_at=row.created_at,
        )
        for row in rows
    ]


def _owned(job: ClaimedJob, worker_id: str) -> Any:
    # Fencing: if our lease expired and another worker re-claimed the job, attempts moved on
    # and our late write matches nothing.
    return and_(
        Job.id == job.id,
        Job.state == "running",
        Job.worker_id == worker_id,
        Job.attempts == job.attempts,
    )


async def renew_leases(
    session: AsyncSession,
    worker_id: str,
    jobs: Sequence[ClaimedJob],
    *,
    lease_seconds: float,
) -> int:
    """Extend the leases of jobs this worker still runs (fenced like `finish_job`)."""
    if not jobs:
        return 0
    now = utcnow()
    result = await session.execute(
        update(Job)
        .where(
            Job.state == "running",
            Job.worker_id == worker_id,
            or_(*(and_(Job.id == job.id, Job.attempts == job.attempts) for job in jobs)),
        )
        .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def finish_job(
    session: AsyncSession, job: ClaimedJob, worker_id: str, *, state: str = "done"
) -> bool:
    result = await session.execute(
        update(Job)
        .where(_owned(job, worker_id))
        .values(state=state, lease_until=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def reschedule_job(
    session: AsyncSession,
    job: ClaimedJob,
    worker_id: str,
    *,
    run_at: datetime,
    error: str | None,
    payload: dict[str, Any] | None = None,
) -> bool:
    values: dict[str, Any] = {
        "state": "queued",
        "run_at": run_at,
        "lease_until": None,
        "last_error": truncate(error),
        "updated_at": utcnow(),
    }
    if payload is not None:
        values["payload"] = payload
    result = await session.execute(
        update(Job)
        .where(_owned(job, worker_id))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def kill_job(session: AsyncSession, job: ClaimedJob, worker_id: str, error: str) -> bool:
    result = await session.execute(
        update(Job)
        .where(_owned(job, worker_id))
        .values(state="dead", lease_until=None, last_error=truncate(error), updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_jobs(session: AsyncSession, worker_id: str, job_ids: Sequence[int]) -> int:
    """Hand unfinished jobs back on shutdown without counting the interrupted try."""
    if not job_ids:
        return 0
    result = await session.execute(
        update(Job)
        .where(Job.id.in_(list(job_ids)), Job.state == "running", Job.worker_id == worker_id)
        .values(
            state="queued",
            lease_until=None,
            run_at=utcnow(),
            attempts=func.max(Job.attempts - 1, 0)
            if _dialect(session) == "sqlite"
            else func.greatest(Job.attempts - 1, 0),
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def enqueue_job(
    session: AsyncSession, message_id: int, kind: str, run_at: datetime, payload: dict[str, Any]
) -> int:
    now = utcnow()
    job = Job(
        kind=kind,
        message_id=message_id,
        state="queued",
        run_at=run_at,
        attempts=0,
        payload=payload,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    await session.flush()
    return job.id


async def next_due_at(session: AsyncSession) -> datetime | None:
    """When the earliest queued job falls due (lets an idle worker sleep exactly that long)."""
    return (
        await session.execute(select(func.min(Job.run_at)).where(Job.state == "queued"))
    ).scalar_one_or_none()


async def requeue_dead_jobs(session: AsyncSession, message_id: int) -> int:
    """Operator replay: dead jobs of a message become due now with a fresh attempt budget."""
    now = utcnow()
    result = await session.execute(
        update(Job)
        .where(Job.message_id == message_id, Job.state == "dead")
        .values(state="queued", run_at=now, attempts=0, lease_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def jobs_for_message(session: AsyncSession, message_id: int) -> list[Job]:
    return list(
        (await session.execute(select(Job).where(Job.message_id == message_id).order_by(Job.id)))
        .scalars()
        .all()
    )


async def job_counts(session: AsyncSession) -> dict[str, int]:
    rows = (
        await session.execute(
            select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
        )
    ).all()
    return {f"{kind}:{state}": int(count) for kind, state, count in rows}


# --- messages ----------------------------------------------------------------------------


async def get_message(session: AsyncSession, message_id: int) -> Message | None:
    return await session.get(Message, message_id)


async def get_message_by_ghl_id(session: AsyncSession, ghl_message_id: str) -> Message | None:
    return (
        await session.execute(select(Message).where(Message.ghl_message_id == ghl_message_id))
    ).scalar_one_or_none()


async def update_message(session: AsyncSession, message_id: int, **values: Any) -> None:
    values["updated_at"] = utcnow()
    if "error_message" in values:
        values["error_message"] = truncate(values["error_message"])
    if values.get("status") in TERMINAL_MESSAGE_STATES and "finished_at" not in values:
        values["finished_at"] = values["updated_at"]
    await session.execute(
        update(Message)
        .where(Message.id == message_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def list_messages(
    session: AsyncSession,
    *,
    location_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[Message]:
    query: Select[Message] = select(Message).order_by(Message.id.desc()).limit(limit)
    if location_id:
        query = query.where(Message.location_id == location_id)
    if status:
        query = query.where(Message.status == status)
    return list((await session.execute(query)).scalars().all())


async def message_status_counts(session: AsyncSession) -> dict[str, int]:
    rows = (
        await session.execute(select(Message.status, func.count()).group_by(Message.status))
    ).all()
    return {status: int(count) for status, count in rows}


async def record_attempt(
    session: AsyncSession,
    *,
    message_id: int,
    job_id: int | None,
    kind: str,
    outcome: str,
    http_status: int | None = None,
    code: str | None = None,
    gateway_message_id: str | None = None,
    detail: str | None = None,
    duration_ms: int | None = None,
) -> None:
    session.add(
        Attempt(
            message_id=message_id,
            job_id=job_id,
            kind=kind,
            at=utcnow(),
            outcome=outcome,
            http_status=http_status,
            code=code,
            gateway_message_id=gateway_message_id,
            detail=truncate(detail),
            duration_ms=duration_ms,
        )
    )


async def attempts_for_message(session: AsyncSession, message_id: int) -> list[Attempt]:
    return list(
        (
            await session.execute(
                select(Attempt).where(Attempt.message_id == message_id).order_by(Attempt.id)
            )
        )
        .scalars()
        .all()
    )


# --- location gateway settings -----------------------------------------------------------


async def get_location_settings(session: AsyncSession, location_id: str) -> LocationSettings | None:
    return await session.get(LocationSettings, location_id)


async def list_location_settings(session: AsyncSession) -> list[LocationSettings]:
    return list(
        (await session.execute(select(LocationSettings).order_by(LocationSettings.location_id)))
        .scalars()
        .all()
    )


async def upsert_location_settings(
    session: AsyncSession,
    location_id: str,
    *,
    api_key_enc: str | None = None,
    sender_id: str | None = None,
    channel: str | None = None,
    region: str | None = None,
) -> None:
    """Set the given fields; fields passed as None keep their stored value."""
    now = utcnow()
    values: dict[str, Any] = {
        key: value
        for key, value in {
            "api_key_enc": api_key_enc,
            "sender_id": sender_id,
            "channel": channel,
            "region": region,
        }.items()
        if value is not None
    }
    statement = _insert(session, LocationSettings).values(
        location_id=location_id, gateway="cast", updated_at=now, **values
    )
    statement = statement.on_conflict_do_update(
        index_elements=["location_id"], set_={**values, "updated_at": now}
    )
    await session.execute(statement)


async def delete_location_settings(session: AsyncSession, location_ids: Sequence[str]) -> int:
    if not location_ids:
        return 0
    result = await session.execute(
        delete(LocationSettings).where(LocationSettings.location_id.in_(list(location_ids)))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- secrets rotation --------------------------------------------------------------------


async def rotate_secrets(engine: AsyncEngine, box: SecretBox, *, dry_run: bool) -> int:
    """Re-encrypt every stored secret under the primary key; returns how many there are."""
    from castbridge.store.installations import rotate_installation_secrets

    async with AsyncSession(engine, expire_on_commit=False) as session:
        count = 0
        for row in await list_location_settings(session):
            if row.api_key_enc:
                row.api_key_enc = box.rotate(row.api_key_enc)
                count += 1
        count += await rotate_installation_secrets(session, box)
        if dry_run:
            await session.rollback()
        else:
            await session.commit()
    return int(count)


async def location_install_state(session: AsyncSession, location_id: str) -> str | None:
    """The state of the location's own token row ("active", "paused", ...), None if never seen."""
    from castbridge.store.models import Installation

    return (
        await session.execute(
            select(Installation.state).where(
                Installation.user_type == "Location", Installation.resource_id == location_id
            )
        )
    ).scalar_one_or_none()
