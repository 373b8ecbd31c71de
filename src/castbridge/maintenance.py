"""Housekeeping jobs: pruning what would otherwise grow without bound, on a schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.config import Settings
from castbridge.logging import get_logger
from castbridge.outbound.runtime import Runtime
from castbridge.store import events, jobs
from castbridge.store.db import Store
from castbridge.store.jobs import ClaimedJob, NewJob, Transition

log = get_logger(__name__)

PRUNE_EVERY = timedelta(hours=1)
# Retention deletes a batch per transaction; this many batches per table per run, the rest
# at the next run, so a first prune of a large backlog does not run for an hour.
RETENTION_BATCHES = 50


def prune_job(run_at: datetime | None = None) -> NewJob:
    return NewJob(
        kind="prune",
        lane="admin",
        run_at=run_at or datetime.now(UTC),
        singleton_key="prune",
    )


def webhook_job(account_id: int) -> NewJob:
    return NewJob(
        kind="webhook_setup",
        lane="admin",
        run_at=datetime.now(UTC),
        account_id=account_id,
        singleton_key=f"webhook_setup:{account_id}",
        payload={"account_id": account_id},
    )


async def ensure_standing_jobs(session: AsyncSession, settings: Settings) -> None:
    """The jobs that must always exist once a worker runs: housekeeping, one reply poller per
    pollable account, and webhook registration for the operator's default accounts on
    gateways that take registrations, when missing or made for another public URL
    (singletons, so every worker starting may ask)."""
    from castbridge.accounts import webhook_url
    from castbridge.gateways.registry import spec
    from castbridge.inbound.optout_sync import ensure_syncs
    from castbridge.inbound.poll import ensure_pollers
    from castbridge.store import accounts as account_store

    await jobs.enqueue(session, prune_job())
    await ensure_pollers(session)
    await ensure_syncs(session)
    if not settings.public_url:
        return
    for row in await account_store.list_accounts(session, include_retired=False):
        if row.origin != "env" or spec(row.gateway).capabilities.webhook_setup != "registered":
            continue
        wanted = webhook_url(settings.public_url, row.gateway, row.webhook_token)
        done = row.webhooks or {}
        if done.get("url") != wanted or done.get("error") or not done.get("registered"):
            await jobs.enqueue(session, webhook_job(row.id))


async def register_webhooks(rt: Runtime, job: ClaimedJob) -> Transition:
    """Register castbridge's webhook URL for an account (its outcome is kept on the account
    and shown by `castbridge accounts show`; a failure is tried again at the next start)."""
    from castbridge.accounts import register_webhooks as register
    from castbridge.store import accounts as account_store

    account_id = int(job.payload["account_id"])
    async with rt.store.read() as session:
        row = await account_store.get(session, account_id)
    if row is None or row.state == "retired" or not rt.settings.public_url:
        return Transition(fate="done")
    from castbridge.limits import Throttled
    from castbridge.outbound.runtime import later

    try:
        await register(
            rt.store,
            rt.gateways.waiting(),
            account_id,
            row.gateway,
            row.webhook_token,
            rt.settings.public_url,
        )
    except Throttled as exc:
        return later(job, exc.wait, count=False)
    return Transition(fate="done")


async def prune(rt: Runtime, job: ClaimedJob) -> Transition:
    """Expired OAuth states, webhook ids past HighLevel's retries, old gateway events and
    finished jobs; then the next run is queued (one prune job exists at a time)."""
    now = datetime.now(UTC)

    async def _work(session: object) -> dict[str, int]:
        from sqlalchemy.ext.asyncio import AsyncSession

        assert isinstance(session, AsyncSession)
        removed = await events.prune(session, now=now)
        # An account configured in another process, or one whose poller ended: polled again.
        from castbridge.inbound.optout_sync import ensure_syncs
        from castbridge.inbound.poll import ensure_pollers

        removed["pollers_started"] = await ensure_pollers(session)
        removed["optout_syncs_started"] = await ensure_syncs(session)
        return removed

    removed = await rt.store.run(_work)
    removed.update(await apply_retention(rt.store, rt.settings, now=now))
    if any(removed.values()):
        log.info("pruned", **removed)
    return Transition(fate="done", enqueue=(_next(now),))


async def apply_retention(
    store: Store, settings: Settings, *, now: datetime, batches: int = RETENTION_BATCHES
) -> dict[str, int]:
    """Finished jobs and attempts past CASTBRIDGE_RETENTION_DAYS, finished messages past
    CASTBRIDGE_MESSAGE_RETENTION_DAYS; each batch its own short transaction."""
    from castbridge.store import retention

    work_cutoff = now - timedelta(days=settings.retention_days)
    message_cutoff = now - timedelta(days=settings.message_retention_days)
    steps = {
        "messages": lambda s: retention.prune_messages(s, older_than=message_cutoff),
        "jobs": lambda s: retention.prune_jobs(s, older_than=work_cutoff),
        "attempts": lambda s: retention.prune_attempts(s, older_than=work_cutoff),
    }
    removed: dict[str, int] = {}
    for name, step in steps.items():
        removed[name] = 0
        for _ in range(batches):
            count = await store.run(step)
            removed[name] += count
            if count < retention.BATCH:
                break
    return removed


def _next(now: datetime) -> NewJob:
    return prune_job(now + PRUNE_EVERY)
