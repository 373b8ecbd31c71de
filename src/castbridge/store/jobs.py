"""The job queue: a table written in the same transaction as the rows it works on.

Jobs are claimed per lane with a lease (`UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)
RETURNING`), oldest due first; a crashed worker's jobs come back when the lease runs out (the
reaper). Every write a worker makes about a job it claimed is fenced on (id, worker, attempts),
so a worker whose lease expired and was overtaken cannot write a late outcome. A handler's
result is one `Transition`, applied in one transaction by `apply`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Interval,
    Table,
    Update,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.store import dialect
from castbridge.store.messages import (
    MESSAGES,
    TERMINAL_MESSAGE_STATES,
    record_attempt,
    update_message,
)
from castbridge.store.models import Job, Message
from castbridge.store.text import clip

LANES = ("send", "status", "report", "inbound", "admin")
OPEN_STATES = ("queued", "running")
# The singleton index's predicate, as literals: PostgreSQL infers the arbiter index of
# ON CONFLICT at plan time, and a generic plan (a prepared statement run a few times) cannot
# prove a predicate made of bound parameters implies the index's own.
SINGLETON_OPEN = text("state IN ('queued', 'running')")
# Statements go to the Core tables, not the ORM entities: nothing here needs the identity map,
# and the ORM's bulk-DML preparation was a tenth of a job's CPU in the profile.
JOBS = cast(Table, Job.__table__)


def utcnow() -> datetime:
    return datetime.now(UTC)


KIND_CHARS = 16


@dataclass(frozen=True, slots=True)
class NewJob:
    kind: str
    lane: str
    run_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)
    message_id: int | None = None
    location_id: str | None = None
    account_id: int | None = None
    singleton_key: str | None = None

    def __post_init__(self) -> None:
        # The columns are 16 characters: PostgreSQL refuses a longer name where SQLite would
        # store it, so a new job kind fails here, in every test, not in production.
        if len(self.kind) > KIND_CHARS or len(self.lane) > KIND_CHARS:
            raise ValueError(f"job kind and lane are at most {KIND_CHARS} characters")


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    kind: str
    lane: str
    message_id: int | None
    location_id: str | None
    account_id: int | None
    attempts: int  # including this claim: the fencing token
    payload: dict[str, Any]
    created_at: datetime


def _row_values(job: NewJob, now: datetime) -> dict[str, Any]:
    return {
        "kind": job.kind,
        "lane": job.lane,
        "message_id": job.message_id,
        "location_id": job.location_id,
        "account_id": job.account_id,
        "singleton_key": job.singleton_key,
        "state": "queued",
        "run_at": job.run_at,
        "attempts": 0,
        "payload": job.payload,
        "created_at": now,
        "updated_at": now,
    }


async def enqueue(session: AsyncSession, job: NewJob) -> int | None:
    """Add a job; a singleton whose key is already queued or running is not added (None)."""
    now = utcnow()
    statement = dialect.insert(session, JOBS).values(**_row_values(job, now))
    if job.singleton_key is not None:
        statement = statement.on_conflict_do_nothing(
            index_elements=["singleton_key"],
            index_where=SINGLETON_OPEN,
        )
    result = await session.execute(statement.returning(Job.id))
    job_id = result.scalar_one_or_none()
    if job_id is None:
        return None
    if job.run_at <= now:
        await dialect.notify_jobs(session, [job.lane])
    return int(job_id)


async def enqueue_many(session: AsyncSession, jobs: Sequence[NewJob]) -> None:
    if not jobs:
        return
    now = utcnow()
    plain = [job for job in jobs if job.singleton_key is None]
    if plain:
        await session.execute(dialect.insert(session, JOBS), [_row_values(j, now) for j in plain])
        await dialect.notify_jobs(session, [j.lane for j in plain if j.run_at <= now])
    for job in jobs:
        if job.singleton_key is not None:
            await enqueue(session, job)


async def claim(
    session: AsyncSession, *, lane: str, worker_id: str, limit: int, lease_seconds: float
) -> list[ClaimedJob]:
    """Take up to `limit` due jobs of `lane`, oldest first, with a lease on the database clock.

    Only `queued` jobs are considered (expired leases are put back by `reap`), so the query
    walks the (lane, state, run_at) index and costs the same with 100 or 100,000 queued.
    """
    name = dialect.name_of(session)
    params: dict[str, Any] = {"claim_lane": lane, "claim_limit": limit, "claim_worker": worker_id}
    if name == "sqlite":
        now = datetime.now(UTC)
        params.update(claim_now=now, claim_lease_until=now + timedelta(seconds=lease_seconds))
    else:
        params["claim_lease"] = timedelta(seconds=lease_seconds)
    statement = _claim_statement(name)
    rows = (await session.execute(statement, params)).all()
    jobs = [
        ClaimedJob(
            id=row.id,
            kind=row.kind,
            lane=row.lane,
            message_id=row.message_id,
            location_id=row.location_id,
            account_id=row.account_id,
            attempts=row.attempts,
            payload=dict(row.payload or {}),
            created_at=row.created_at,
        )
        for row in rows
    ]
    jobs.sort(key=lambda job: job.id)
    return jobs


@functools.cache
def _claim_statement(dialect_name: str) -> Update:
    """The claim, built once per dialect and then only bound: building it (and its cache key)
    cost about as much as running it, once per claim. On Core columns, so it skips the ORM's
    bulk-update path."""
    jobs = JOBS.c
    if dialect_name == "sqlite":
        # SQLite has no datetime arithmetic: the clock and the lease's end come bound.
        # Bound names differ from the columns': SQLAlchemy keeps column names for SET values.
        now: Any = bindparam("claim_now", type_=jobs.run_at.type)
        lease_until: Any = bindparam("claim_lease_until", type_=jobs.lease_until.type)
    else:
        # The database's clock, shared by every host (see `dialect.now`).
        now = func.now()
        lease_until = func.now() + bindparam("claim_lease", type_=Interval())
    candidates = (
        select(jobs.id)
        .where(jobs.lane == bindparam("claim_lane"), jobs.state == "queued", jobs.run_at <= now)
        .order_by(jobs.run_at)
        .limit(bindparam("claim_limit", type_=Integer()))
        .with_for_update(skip_locked=True)
    )
    owned: ColumnElement[bool] = jobs.id.in_(candidates.scalar_subquery())
    if dialect_name != "sqlite":
        # Belt and braces beside SKIP LOCKED. On SQLite the statement runs alone (one writer)
        # and this second `state` test made the planner walk every queued job through the
        # (state, lease_until) index instead of fetching the chosen ids by primary key: a claim
        # cost 1.9 ms with 100 queued and 7.2 ms with 100,000.
        owned = and_(owned, jobs.state == "queued")
    return (
        update(JOBS)
        .where(owned)
        .values(
            state="running",
            lease_until=lease_until,
            worker_id=bindparam("claim_worker"),
            attempts=jobs.attempts + 1,
            updated_at=now,
        )
        .returning(
            jobs.id,
            jobs.kind,
            jobs.lane,
            jobs.message_id,
            jobs.location_id,
            jobs.account_id,
            jobs.attempts,
            jobs.payload,
            jobs.created_at,
        )
    )


async def reap(session: AsyncSession) -> int:
    """Put back the jobs of workers that died (lease expired); their try still counts."""
    now = dialect.now(session)
    result = await session.execute(
        update(JOBS)
        .where(Job.state == "running", Job.lease_until < now)
        .values(state="queued", lease_until=None, worker_id=None, run_at=now, updated_at=now)
        .returning(Job.lane)
    )
    lanes = list(result.scalars())
    await dialect.notify_jobs(session, lanes)
    return len(lanes)


def _owned(job: ClaimedJob, worker_id: str) -> Any:
    return and_(
        Job.id == job.id,
        Job.state == "running",
        Job.worker_id == worker_id,
        Job.attempts == job.attempts,
    )


async def renew(
    session: AsyncSession, worker_id: str, jobs: Sequence[ClaimedJob], *, lease_seconds: float
) -> int:
    """Extend the leases of jobs this worker still runs (fenced like every other write)."""
    if not jobs:
        return 0
    now = dialect.now(session)
    result = await session.execute(
        update(JOBS)
        .where(
            Job.state == "running",
            Job.worker_id == worker_id,
            or_(*(and_(Job.id == job.id, Job.attempts == job.attempts) for job in jobs)),
        )
        .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def release(session: AsyncSession, worker_id: str, job_ids: Sequence[int]) -> int:
    """Hand unfinished jobs back on shutdown without counting the interrupted try."""
    if not job_ids:
        return 0
    now = dialect.now(session)
    result = await session.execute(
        update(JOBS)
        .where(Job.id.in_(list(job_ids)), Job.state == "running", Job.worker_id == worker_id)
        .values(
            state="queued",
            lease_until=None,
            worker_id=None,
            run_at=now,
            attempts=dialect.greatest(session, Job.attempts - 1, 0),
            updated_at=now,
        )
        .returning(Job.lane)
    )
    lanes = list(result.scalars())
    await dialect.notify_jobs(session, lanes)
    return len(lanes)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One line of a message's timeline."""

    kind: str
    outcome: str
    http_status: int | None = None
    code: str | None = None
    gateway_message_id: str | None = None
    detail: str | None = None
    duration_ms: int | None = None


JobFate = Literal["done", "dead", "retry", "next", "cancelled"]


@dataclass(frozen=True, slots=True)
class Transition:
    """What one run of a job decided, applied atomically by `apply`.

    - `fate`: "done" / "dead" / "cancelled" end the job; "retry" puts it back at `run_at`;
      "next" turns the same row into the message's next step (`kind`, `lane`, `payload`), with a
      fresh attempt budget, which saves a row and a statement per step.
    - `count_attempt=False` undoes this claim's attempt (a self-inflicted rate limit, an
      account on hold): waiting is not failing.
    - `message` updates the message's columns, only while its status is one of
      `message_if_status` (forward-only transitions); `enqueue` and `attempt` happen only when
      that update applied (or when there is none).
    """

    fate: JobFate
    run_at: datetime | None = None
    kind: str | None = None
    lane: str | None = None
    payload: dict[str, Any] | None = None
    error: str | None = None
    count_attempt: bool = True
    message: dict[str, Any] | None = None
    message_if_status: frozenset[str] | None = None
    attempt: AttemptRecord | None = None
    enqueue: tuple[NewJob, ...] = ()
    # Other jobs of the same message to close in the same transaction (e.g. its queued poll
    # once a pushed report settled it).
    close_kinds: tuple[str, ...] = ()
    # Writes to other tables (an inbound event's state) made in the same transaction, only
    # while the lease holds: a worker that lost its job cannot overwrite what the next did.
    also: Callable[[AsyncSession], Awaitable[None]] | None = None


async def apply(
    session: AsyncSession,
    job: ClaimedJob,
    worker_id: str,
    transition: Transition,
    *,
    message_id: int | None = None,
) -> bool:
    """Apply `transition` for `job`; False (and nothing written) when the lease was lost.
    `message_id` names the message a job that is not the message's own works on (a pushed
    report)."""
    target = message_id if message_id is not None else job.message_id
    now = dialect.now(session)
    values: dict[str, Any] = {"updated_at": now, "lease_until": None}
    if transition.fate in ("done", "dead", "cancelled"):
        values["state"] = transition.fate
    else:
        values["state"] = "queued"
        values["run_at"] = transition.run_at or now
        values["worker_id"] = None
    if transition.fate == "next":
        values["attempts"] = 0
        if transition.kind is not None:
            values["kind"] = transition.kind
        if transition.lane is not None:
            values["lane"] = transition.lane
    elif not transition.count_attempt:
        values["attempts"] = job.attempts - 1
    if transition.payload is not None:
        values["payload"] = transition.payload
    if transition.error is not None or transition.fate != "retry":
        values["last_error"] = clip(transition.error)
    # On PostgreSQL `now` is the SQL clock, written into the statement; the rest is bound.
    clock = tuple(sorted(k for k, v in values.items() if v is now)) if sql_clock(now) else ()
    columns = tuple(sorted(k for k in values if k not in clock))
    params: dict[str, Any] = {f"set_{name}": values[name] for name in columns}
    params.update(where_id=job.id, where_worker=worker_id, where_attempts=job.attempts)
    result = await session.execute(_outcome_statement(columns, clock), params)
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    applied = True
    if transition.message and target is not None:
        applied = await update_message(
            session,
            target,
            transition.message,
            only_if_status=transition.message_if_status,
        )
    if not applied:
        return True
    if transition.attempt is not None and target is not None:
        await record_attempt(session, target, job.id, transition.attempt)
    if transition.close_kinds and target is not None:
        await close_jobs(session, target, transition.close_kinds, except_id=job.id)
    await enqueue_many(session, transition.enqueue)
    if transition.also is not None:
        await transition.also(session)
    return True


def sql_clock(now: Any) -> bool:
    return isinstance(now, ColumnElement)


@functools.lru_cache(maxsize=256)
def _outcome_statement(columns: tuple[str, ...], clock: tuple[str, ...]) -> Update:
    """One fenced outcome UPDATE per set of columns, built once and then only bound (building
    it cost more than running it, once per job)."""
    sets: dict[str, Any] = {
        name: bindparam(f"set_{name}", type_=JOBS.c[name].type) for name in columns
    }
    sets.update((name, func.now()) for name in clock)
    return (
        update(JOBS)
        .where(
            # Core columns: an ORM attribute here sends it through the ORM's bulk-update path.
            JOBS.c.id == bindparam("where_id"),
            JOBS.c.state == "running",
            JOBS.c.worker_id == bindparam("where_worker"),
            JOBS.c.attempts == bindparam("where_attempts"),
        )
        .values(sets)
    )


async def close_jobs(
    session: AsyncSession, message_id: int, kinds: Sequence[str], *, except_id: int | None = None
) -> int:
    """Mark the message's queued jobs of these kinds done (a running one is fenced out by the
    message's forward-only status)."""
    condition = and_(Job.message_id == message_id, Job.kind.in_(list(kinds)), Job.state == "queued")
    if except_id is not None:
        condition = and_(condition, Job.id != except_id)
    result = await session.execute(
        update(JOBS).where(condition).values(state="done", updated_at=dialect.now(session))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def next_due_at(session: AsyncSession, lanes: Sequence[str]) -> datetime | None:
    """When the earliest queued job of these lanes falls due (an idle worker sleeps till then)."""
    return (
        await session.execute(
            select(func.min(Job.run_at)).where(Job.state == "queued", Job.lane.in_(list(lanes)))
        )
    ).scalar_one_or_none()


async def next_due_by_lane(
    session: AsyncSession, lanes: Sequence[str]
) -> dict[str, datetime | None]:
    """The earliest queued run_at per lane, each an index lookup, in one statement."""
    columns = [
        select(func.min(Job.run_at))
        .where(Job.lane == lane, Job.state == "queued")
        .scalar_subquery()
        .label(f"lane_{index}")
        for index, lane in enumerate(lanes)
    ]
    row = (await session.execute(select(*columns))).one()
    values = [_aware(value) for value in row]
    return dict(zip(lanes, values, strict=True))


def _aware(value: Any) -> datetime | None:
    # A scalar subquery loses the column's type on SQLite: read the stored text back.
    if value is None:
        return None
    when: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def for_message(session: AsyncSession, message_id: int) -> list[Job]:
    return list(
        (await session.execute(select(Job).where(Job.message_id == message_id).order_by(Job.id)))
        .scalars()
        .all()
    )


async def counts(session: AsyncSession) -> dict[str, int]:
    rows = (
        await session.execute(
            select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
        )
    ).all()
    return {f"{kind}:{state}": int(count) for kind, state, count in rows}


async def lane_depths(session: AsyncSession) -> list[tuple[str, int, datetime | None]]:
    """(lane, queued jobs, oldest due) for metrics."""
    rows = (
        await session.execute(
            select(Job.lane, func.count(), func.min(Job.run_at))
            .where(Job.state == "queued")
            .group_by(Job.lane)
        )
    ).all()
    return [(lane, int(count), oldest) for lane, count, oldest in rows]


async def requeue_dead(session: AsyncSession, message_id: int) -> int:
    """Operator replay: the message's dead jobs become due now with a fresh attempt budget."""
    now = dialect.now(session)
    result = await session.execute(
        update(JOBS)
        .where(Job.message_id == message_id, Job.state == "dead")
        .values(state="queued", run_at=now, attempts=0, lease_until=None, updated_at=now)
        .returning(Job.lane)
    )
    lanes = list(result.scalars())
    await dialect.notify_jobs(session, lanes)
    return len(lanes)


async def move_queued_sends(
    session: AsyncSession, *, account_id: int, run_at: datetime | Any
) -> int:
    """Hold (a future `run_at`) or release (now) every queued send pinned to an account."""
    result = await session.execute(
        update(JOBS)
        .where(Job.lane == "send", Job.state == "queued", Job.account_id == account_id)
        .values(run_at=run_at, updated_at=dialect.now(session))
    )
    moved = int(result.rowcount)  # type: ignore[attr-defined]
    if moved:
        # A hold only delays; a release makes them due, and other processes must hear of it.
        await dialect.notify_jobs(session, ["send"])
    return moved


async def cancel_location_sends(session: AsyncSession, location_id: str) -> list[int]:
    """UNINSTALL: cancel the location's queued sends; returns their message ids."""
    ids = list(
        (
            await session.execute(
                update(JOBS)
                .where(
                    Job.location_id == location_id,
                    Job.lane == "send",
                    Job.state == "queued",
                    Job.message_id.is_not(None),
                )
                .values(state="cancelled", updated_at=dialect.now(session))
                .returning(Job.message_id)
            )
        ).scalars()
    )
    return [int(i) for i in ids if i is not None]


async def cancel_message_sends(session: AsyncSession, message_ids: Sequence[int]) -> int:
    """Close the queued send jobs of messages that were ended another way."""
    if not message_ids:
        return 0
    result = await session.execute(
        update(JOBS)
        .where(Job.message_id.in_(list(message_ids)), Job.lane == "send", Job.state == "queued")
        .values(state="cancelled", updated_at=dialect.now(session))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def release_held_for_install(session: AsyncSession, location_id: str) -> None:
    """The location's install finished: its held deliveries become due now."""
    now = dialect.now(session)
    await session.execute(
        update(JOBS)
        .where(Job.location_id == location_id, Job.lane == "send", Job.state == "queued")
        .values(run_at=now, updated_at=now)
    )
    await dialect.notify_jobs(session, ["send"])
    await session.execute(
        update(MESSAGES)
        .where(Message.location_id == location_id, Message.held == "install")
        .values(held=None)
    )


async def open_jobs_of_kind(session: AsyncSession, kind: str) -> list[Job]:
    return list(
        (
            await session.execute(
                select(Job).where(Job.kind == kind, Job.state.in_(OPEN_STATES)).order_by(Job.id)
            )
        )
        .scalars()
        .all()
    )


async def repoint_sends(session: AsyncSession, message_ids: Sequence[int], account_id: int) -> None:
    """Queued sends of re-pinned messages follow them to their new account, due now."""
    now = dialect.now(session)
    await session.execute(
        update(JOBS)
        .where(Job.message_id.in_(list(message_ids)), Job.lane == "send", Job.state == "queued")
        .values(account_id=account_id, run_at=now, updated_at=now)
    )
    await dialect.notify_jobs(session, ["send"])


async def running_send_messages(session: AsyncSession, message_ids: Sequence[int]) -> set[int]:
    if not message_ids:
        return set()
    rows = await session.execute(
        select(Job.message_id).where(
            Job.message_id.in_(list(message_ids)), Job.lane == "send", Job.state == "running"
        )
    )
    return {int(i) for i in rows.scalars() if i is not None}


__all__ = [
    "LANES",
    "TERMINAL_MESSAGE_STATES",
    "AttemptRecord",
    "ClaimedJob",
    "Message",
    "NewJob",
    "Transition",
    "apply",
    "claim",
    "enqueue",
    "reap",
]
