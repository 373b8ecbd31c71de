"""SQL for outbound messages and their timeline (attempts)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from sqlalchemy import Select, Table, Update, bindparam, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.secrets import SealedPhone
from castbridge.store import dialect
from castbridge.store.models import Attempt, Message
from castbridge.store.text import clip, fit

if TYPE_CHECKING:
    from castbridge.store.jobs import AttemptRecord, NewJob

TERMINAL_MESSAGE_STATES = frozenset({"delivered", "failed", "unknown", "sent", "cancelled"})
# Statuses a send may still act on.
SENDABLE = frozenset({"queued", "dead"})

# Updates go to the Core table: the ORM's bulk-DML preparation buys nothing here.
MESSAGES = cast(Table, Message.__table__)
# Column widths of values that come from outside (store/models.py).
_WIDTHS = {
    "gateway_message_id": 64,
    "gateway_status": 32,
    "error_code": 64,
    "ghl_status": 16,
    "status": 16,
    "held": 16,
    "sender_id": 32,
    "channel": 16,
    "gateway": 24,
    "contact_id": 64,
}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class NewMessage:
    ghl_message_id: str
    location_id: str
    contact_id: str | None
    phone: SealedPhone
    text: str
    attachments: list[str]
    encoding: str | None
    parts_estimate: int | None
    status: str  # "queued", or "failed" when refused at intake
    held: str | None = None
    account_id: int | None = None
    gateway: str | None = None
    sender_id: str | None = None
    channel: str | None = None
    error_code: str | None = None
    error_message: str | None = None


InsertConflict = Literal["duplicate", "other_location"]


@dataclass(frozen=True, slots=True)
class Inserted:
    message_id: int | None
    conflict: InsertConflict | None = None


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if key == "error_message":
            value = clip(value)
        elif key in _WIDTHS and isinstance(value, str):
            value = fit(value, _WIDTHS[key])
        cleaned[key] = value
    return cleaned


@functools.cache
def _insert_messages(dialect_name: str) -> Any:
    """INSERT of bound values, built once per dialect and run with a list of rows: SQLAlchemy
    renders the list as one multi-row INSERT (its "insertmanyvalues"), so a group commit of 64
    webhooks is one statement, not 64. Each row stored comes back by its (location, messageId);
    a row already stored (a race with another process on PostgreSQL) comes back as nothing."""
    # The Core table, not the ORM entity: with a parameter list an ORM insert would be taken
    # for an ORM bulk insert.
    return (
        dialect.insert_for(dialect_name, MESSAGES)
        .on_conflict_do_nothing(index_elements=["location_id", "ghl_message_id"])
        .returning(MESSAGES.c.id, MESSAGES.c.location_id, MESSAGES.c.ghl_message_id)
    )


# Where each messageId of a batch is stored already, if anywhere (one indexed lookup per batch).
_STORED_UNDER = select(MESSAGES.c.ghl_message_id, MESSAGES.c.location_id).where(
    MESSAGES.c.ghl_message_id.in_(bindparam("ids", expanding=True))
)


def _row(message: NewMessage, now: datetime) -> dict[str, Any]:
    finished = now if message.status in TERMINAL_MESSAGE_STATES else None
    return _clean(
        {
            "ghl_message_id": message.ghl_message_id,
            "location_id": message.location_id,
            "contact_id": message.contact_id,
            "phone_enc": message.phone.enc,
            "phone_hash": message.phone.hash,
            "phone_masked": message.phone.masked,
            "e164": message.phone.e164,
            "text": message.text,
            "attachments": message.attachments,
            "encoding": message.encoding,
            "parts_estimate": message.parts_estimate,
            "status": message.status,
            "held": message.held,
            "account_id": message.account_id,
            "gateway": message.gateway,
            "sender_id": message.sender_id,
            "channel": message.channel,
            "error_code": message.error_code,
            "error_message": message.error_message,
            "maybe_sent": False,
            "created_at": now,
            "updated_at": now,
            "finished_at": finished,
            "force_report": False,
        }
    )


async def insert_with_job(
    session: AsyncSession, message: NewMessage, job: NewJob | None
) -> Inserted:
    """Insert the message and its first job in the caller's transaction (see `insert_many`)."""
    return (await insert_many(session, [(message, job)]))[0]


async def insert_many(
    session: AsyncSession, items: Sequence[tuple[NewMessage, NewJob | None]]
) -> list[Inserted]:
    """Insert messages and their first jobs in the caller's transaction, in three statements
    however many there are; one result per item, in order, as if inserted one after another.

    Unique on (location, messageId): a repeat (HighLevel's retry, a replay, or the same post
    twice in one batch) inserts nothing and creates no job, so it can never cause a second send.
    The same messageId already stored under another location, or taken by another location
    earlier in the batch, is not stored at all (ghl.md §2 step 4: log, alert, send nothing).
    """
    from castbridge.store.jobs import enqueue_many

    if not items:
        return []
    ids = sorted({message.ghl_message_id for message, _ in items})
    owners: dict[str, set[str]] = {}
    for ghl_id, location_id in await session.execute(_STORED_UNDER, {"ids": ids}):
        owners.setdefault(ghl_id, set()).add(location_id)
    results: list[Inserted | None] = []
    rows: list[dict[str, Any]] = []
    now = utcnow()
    for message, _ in items:
        taken = owners.setdefault(message.ghl_message_id, set())
        if message.location_id in taken:
            results.append(Inserted(None, "duplicate"))
        elif taken:
            results.append(Inserted(None, "other_location"))
        else:
            # Claimed here, so a later item of the batch is judged as if this one were stored.
            taken.add(message.location_id)
            results.append(None)
            rows.append(_row(message, now))
    stored: dict[tuple[str, str], int] = {}
    if rows:
        statement = _insert_messages(dialect.name_of(session))
        for message_id, location_id, ghl_id in await session.execute(statement, rows):
            stored[(location_id, ghl_id)] = int(message_id)
    first_jobs: list[NewJob] = []
    for index, (message, job) in enumerate(items):
        if results[index] is not None:
            continue
        message_id = stored.get((message.location_id, message.ghl_message_id))
        if message_id is None:
            # Stored meanwhile by another process (PostgreSQL): it, not this post, sends.
            results[index] = await _conflict_of(session, message)
            continue
        results[index] = Inserted(message_id)
        if job is not None:
            first_jobs.append(replace(job, message_id=message_id))
    await enqueue_many(session, first_jobs)
    return [result for result in results if result is not None]


async def _conflict_of(session: AsyncSession, message: NewMessage) -> Inserted:
    other = await session.scalar(
        select(Message.id).where(
            Message.ghl_message_id == message.ghl_message_id,
            Message.location_id != message.location_id,
        )
    )
    return Inserted(None, "other_location" if other is not None else "duplicate")


async def get(session: AsyncSession, message_id: int) -> Message | None:
    return await session.get(Message, message_id)


async def by_ghl_id(
    session: AsyncSession, ghl_message_id: str, location_id: str | None = None
) -> list[Message]:
    query = select(Message).where(Message.ghl_message_id == ghl_message_id)
    if location_id is not None:
        query = query.where(Message.location_id == location_id)
    return list((await session.execute(query.order_by(Message.id))).scalars().all())


async def by_gateway_id(
    session: AsyncSession, account_id: int, gateway_message_id: str
) -> Message | None:
    """The message a gateway id belongs to, on this account or any account with the same key
    (two castbridge accounts may share one API key; the gateway then reports to both)."""
    from castbridge.store.models import GatewayAccount

    same_key = select(GatewayAccount.id).where(
        GatewayAccount.key_fingerprint
        == select(GatewayAccount.key_fingerprint)
        .where(GatewayAccount.id == account_id)
        .scalar_subquery()
    )
    return (
        await session.execute(
            select(Message)
            .where(
                (Message.account_id == account_id) | Message.account_id.in_(same_key),
                Message.gateway_message_id == fit(gateway_message_id, 64),
            )
            .order_by(Message.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def update_message(
    session: AsyncSession,
    message_id: int,
    values: dict[str, Any],
    *,
    only_if_status: frozenset[str] | None = None,
) -> bool:
    """Update the given columns; with `only_if_status`, only while the status is one of those
    (a forward-only transition). True when the row changed."""
    values = _clean({**values, "updated_at": utcnow()})
    if values.get("status") in TERMINAL_MESSAGE_STATES and "finished_at" not in values:
        values["finished_at"] = values["updated_at"]
    columns = tuple(sorted(values))
    params: dict[str, Any] = {f"set_{name}": values[name] for name in columns}
    params["where_id"] = message_id
    if only_if_status is not None:
        params["where_statuses"] = sorted(only_if_status)
    statement = _update_statement(columns, only_if_status is not None)
    result = await session.execute(statement, params)
    return bool(result.rowcount)  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=512)
def _update_statement(columns: tuple[str, ...], guarded: bool) -> Update:
    """One message UPDATE per set of columns, built once and then only bound: building the
    statement cost more than running it (about 0.13 ms, twice per message)."""
    # Core columns, not the ORM entity's: an ORM attribute in the WHERE sends the statement
    # through the ORM's bulk-update path on every execution.
    condition = MESSAGES.c.id == bindparam("where_id")
    if guarded:
        condition = condition & MESSAGES.c.status.in_(bindparam("where_statuses", expanding=True))
    return (
        update(MESSAGES)
        .where(condition)
        .values({name: bindparam(f"set_{name}", type_=MESSAGES.c[name].type) for name in columns})
    )


async def record_attempt(
    session: AsyncSession, message_id: int, job_id: int | None, attempt: AttemptRecord
) -> None:
    session.add(
        Attempt(
            message_id=message_id,
            job_id=job_id,
            kind=fit(attempt.kind, 16) or "",
            at=utcnow(),
            outcome=fit(attempt.outcome, 32) or "",
            http_status=attempt.http_status,
            code=fit(attempt.code, 64),
            gateway_message_id=fit(attempt.gateway_message_id, 64),
            detail=clip(attempt.detail),
            duration_ms=attempt.duration_ms,
        )
    )
    await session.flush()


async def attempts_for(session: AsyncSession, message_id: int) -> list[Attempt]:
    return list(
        (
            await session.execute(
                select(Attempt).where(Attempt.message_id == message_id).order_by(Attempt.id)
            )
        )
        .scalars()
        .all()
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


async def status_counts(session: AsyncSession) -> dict[str, int]:
    rows = (
        await session.execute(select(Message.status, func.count()).group_by(Message.status))
    ).all()
    return {status: int(count) for status, count in rows}


async def set_held(session: AsyncSession, account_id: int, held: str | None) -> int:
    """Mark (or clear) the queued messages of an account as held for it."""
    condition = (Message.account_id == account_id) & (Message.status == "queued")
    result = await session.execute(
        update(MESSAGES).where(condition).values(held=held, updated_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def held_past(
    session: AsyncSession, account_id: int, created_before: datetime
) -> list[Message]:
    """Held messages of an account queued before `created_before` that no attempt may have
    sent (those are failed after the grace; a maybe-sent one stays for reconciliation)."""
    return list(
        (
            await session.execute(
                select(Message).where(
                    Message.account_id == account_id,
                    Message.status == "queued",
                    Message.maybe_sent.is_(False),
                    Message.created_at < created_before,
                )
            )
        )
        .scalars()
        .all()
    )


async def repin_unattempted(
    session: AsyncSession,
    location_id: str,
    new_account_id: int,
    *,
    gateway: str,
    sender_id: str | None,
    channel: str,
) -> list[int]:
    """Move the location's queued messages that no attempt can have reached a gateway with to
    the location's new account (its key was just changed); returns their ids. A message that
    may have been sent stays on its account: retries and reconciliation are scoped per key."""
    from castbridge.store.models import Job

    running = exists().where(
        Job.message_id == Message.id, Job.lane == "send", Job.state == "running"
    )
    rows = (
        await session.execute(
            select(Message.id).where(
                Message.location_id == location_id,
                Message.status == "queued",
                Message.maybe_sent.is_(False),
                Message.account_id.is_distinct_from(new_account_id),
                ~running,
            )
        )
    ).scalars()
    ids = [int(i) for i in rows]
    if ids:
        await session.execute(
            update(MESSAGES)
            .where(Message.id.in_(ids))
            .values(
                account_id=new_account_id,
                gateway=gateway,
                sender_id=fit(sender_id, 32),
                channel=channel,
                held=None,
                updated_at=utcnow(),
            )
        )
    return ids


async def cancel(session: AsyncSession, message_ids: Sequence[int], reason: str) -> None:
    from castbridge.store.jobs import AttemptRecord

    if not message_ids:
        return
    await session.execute(
        update(MESSAGES)
        .where(Message.id.in_(list(message_ids)), Message.status.in_(list(SENDABLE)))
        .values(
            status="cancelled",
            error_code="CANCELLED",
            error_message=clip(reason),
            finished_at=utcnow(),
            updated_at=utcnow(),
        )
    )
    for message_id in message_ids:
        await record_attempt(
            session, message_id, None, AttemptRecord("send", "cancelled", detail=reason)
        )


async def contexts(
    session: AsyncSession, message_ids: Sequence[int]
) -> dict[int, tuple[Message, Any, str | None, Any]]:
    """Messages with their pinned account, their location's install state and the opt-out
    that forbids texting the number, in one statement for a whole claimed batch:
    (message, account or None, install state or None, opt-out or None)."""
    from castbridge.store.models import GatewayAccount, Installation, OptOut

    if not message_ids:
        return {}
    rows = (
        await session.execute(
            select(Message, GatewayAccount, Installation.state, OptOut)
            .outerjoin(GatewayAccount, GatewayAccount.id == Message.account_id)
            .outerjoin(
                Installation,
                (Installation.user_type == "Location")
                & (Installation.resource_id == Message.location_id),
            )
            .outerjoin(
                OptOut,
                (OptOut.location_id == Message.location_id)
                & (OptOut.phone_hash == Message.phone_hash)
                & OptOut.opted_out.is_(True),
            )
            .where(Message.id.in_(list(message_ids)))
            .execution_options(populate_existing=True)
        )
    ).all()
    return {row[0].id: (row[0], row[1], row[2], row[3]) for row in rows}
