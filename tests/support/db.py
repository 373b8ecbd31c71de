"""Reading castbridge's database from a test, through the store (SQLite or PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from castbridge.config import Settings
from castbridge.resources import open_store
from castbridge.store import jobs as job_store
from castbridge.store import messages as message_store
from castbridge.store.models import Attempt, Job, Message, SeenWebhook


async def messages_by_ghl_id(settings: Settings) -> dict[str, Message]:
    async with open_store(settings, upgrade=False) as opened, opened.store.read() as session:
        rows = await message_store.list_messages(session, limit=1_000_000)
    return {row.ghl_message_id: row for row in rows}


async def attempts_of(settings: Settings, ghl_message_id: str) -> list[Attempt]:
    async with open_store(settings, upgrade=False) as opened, opened.store.read() as session:
        (message,) = await message_store.by_ghl_id(session, ghl_message_id)
        return await message_store.attempts_for(session, message.id)


async def job_states(settings: Settings) -> dict[str, int]:
    """`kind:state` of every job there is, with a count, e.g. {"report:done": 3}."""
    async with open_store(settings, upgrade=False) as opened, opened.store.read() as session:
        return await job_store.counts(session)


def stuck(states: dict[str, int]) -> dict[str, int]:
    """Jobs still queued or running ("kind:state" -> count), housekeeping jobs excluded."""
    return {
        key: n
        for key, n in states.items()
        if key.endswith((":queued", ":running"))
        and n
        and not key.startswith(("prune:", "probe:", "inbound_poll:", "optout_sync:"))
    }


async def open_jobs(settings: Settings, ghl_message_id: str) -> int:
    """How many of the message's jobs are still queued or running."""
    async with open_store(settings, upgrade=False) as opened, opened.store.read() as session:
        (message,) = await message_store.by_ghl_id(session, ghl_message_id)
        found = await job_store.for_message(session, message.id)
    return sum(1 for job in found if job.state in {"queued", "running"})


async def row_counts(settings: Settings) -> dict[str, int]:
    """Rows in the tables a webhook can write to."""
    async with open_store(settings, upgrade=False) as opened, opened.store.read() as session:
        counts: dict[str, int] = {}
        for name, model in {"messages": Message, "jobs": Job, "seen_webhooks": SeenWebhook}.items():
            counts[name] = int(
                (await session.execute(select(func.count()).select_from(model))).scalar_one()
            )
        return counts


async def crashed_jobs(settings: Settings) -> list[str]:
    """last_error of every job the worker caught crashing (a bug, by the worker's definition)."""
    async with open_store(settings, upgrade=False) as opened, opened.store.read() as session:
        rows = await session.execute(select(Job.last_error).where(Job.last_error.like("crashed:%")))
        return [str(error) for (error,) in rows]


def phone_of(settings_vault: Any, message: Message) -> str:
    return str(settings_vault.open(message.phone_enc))
