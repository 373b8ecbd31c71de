"""Polling a gateway for replies (Cellcast `getResponses`), one standing job per account: it
finds what a webhook never delivered (not configured, down) and stores it exactly like a
pushed reply; the cursor moves only in the transaction that stores the replies it covers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.gateways.base import Capabilities, GatewayError, InboundSms
from castbridge.gateways.directory import AccountUnusable
from castbridge.gateways.registry import spec
from castbridge.inbound.intake import store_reply
from castbridge.inbound.standing import account_job, due_account, ensure
from castbridge.limits import Throttled
from castbridge.logging import get_logger
from castbridge.outbound.backoff import throttled_delay
from castbridge.outbound.runtime import Runtime, later
from castbridge.store import accounts as account_store
from castbridge.store.jobs import ClaimedJob, NewJob, Transition
from castbridge.store.models import GatewayAccount

log = get_logger(__name__)

# The first poll of an account sees the gateway's whole reply history; only replies from
# around the time castbridge got the account are new to HighLevel.
HISTORY_MARGIN = timedelta(minutes=10)


KIND = "inbound_poll"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _polls(caps: Capabilities) -> bool:
    return caps.inbound_poll


def poll_job(account_id: int, run_at: datetime | None = None) -> NewJob:
    return account_job(KIND, account_id, run_at)


async def ensure_pollers(session: AsyncSession) -> int:
    """One standing poll job per pollable account."""
    return await ensure(session, KIND, _polls)


async def run(rt: Runtime, job: ClaimedJob) -> Transition:
    account = await due_account(rt, job, _polls)
    if account is None:
        return Transition(fate="done")  # no account to poll any more: the job ends
    account_id = account.id
    caps = spec(account.gateway).capabilities
    every = timedelta(seconds=rt.settings.inbound_poll_seconds)
    next_poll = (poll_job(account_id, utcnow() + every),)
    if account.state == "paused":
        return Transition(fate="done", enqueue=next_poll)  # its key is refused right now
    try:
        # Pages are read in a row: wait for each one's token rather than restart the walk.
        gateway = rt.gateways.waiting().gateway(account)
        page = await gateway.poll_inbound(
            account.inbound_cursor, max_pages=rt.settings.inbound_poll_max_pages
        )
    except Throttled as exc:
        return later(job, throttled_delay(exc.wait), count=False)
    except (GatewayError, AccountUnusable) as exc:
        log.warning("inbound_poll_failed", account_id=account_id, error=str(exc))
        return Transition(fate="done", error=str(exc), enqueue=next_poll)
    items = list(page.items)
    if account.inbound_cursor is None:
        since = account.created_at - HISTORY_MARGIN
        items = [i for i in items if i.received_at is None or i.received_at >= since]
    region = account.region or caps.country
    now = utcnow()

    async def save(session: AsyncSession) -> int:
        stored = 0
        for item in reversed(items):  # oldest first, as they were received
            if await _store(session, rt, account, region, item) is not None:
                stored += 1
        await account_store.save_inbound_cursor(session, account_id, page.cursor, now)
        return stored

    stored = await rt.store.run(save)
    if stored:
        # Their jobs are found by the worker's next look at the lane (a fraction of a second).
        log.info("inbound_polled", account_id=account_id, stored=stored, found=len(items))
    return Transition(fate="done", enqueue=next_poll)


async def _store(
    session: AsyncSession, rt: Runtime, account: GatewayAccount, region: str, item: InboundSms
) -> int | None:
    return await store_reply(
        session,
        account=account,
        region=region,
        vault=rt.vault,
        sms=item,
        source="poll",
    )
