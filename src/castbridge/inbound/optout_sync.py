"""Syncing a gateway's own opt-out list (Cast's unsubscribe list, Cellcast `getOptout`) into
castbridge's suppression, one standing job per account: a number that opted out at the gateway
(an unsubscribe link, the gateway's own STOP handling) is refused and set to DND in HighLevel
before a campaign meets the gateway's refusal."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.gateways.base import Capabilities, GatewayError, OptOut
from castbridge.gateways.directory import AccountUnusable
from castbridge.gateways.registry import spec
from castbridge.inbound.intake import seal_sender, store_optout_signal
from castbridge.inbound.standing import account_job, due_account, ensure
from castbridge.limits import Throttled
from castbridge.logging import get_logger
from castbridge.outbound.backoff import throttled_delay
from castbridge.outbound.runtime import Runtime, later
from castbridge.store import inbound as inbound_store
from castbridge.store.jobs import ClaimedJob, NewJob, Transition
from castbridge.store.models import GatewayAccount

log = get_logger(__name__)


KIND = "optout_sync"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _lists(caps: Capabilities) -> bool:
    return caps.optout_list


def sync_job(account_id: int, run_at: datetime | None = None) -> NewJob:
    return account_job(KIND, account_id, run_at)


async def ensure_syncs(session: AsyncSession) -> int:
    """One standing sync job per account whose gateway lists opt-outs."""
    return await ensure(session, KIND, _lists)


def entry_key(phone_hash: str, entry: OptOut) -> str:
    """The same list entry is stored once however often it is listed; a number that opts out
    again at the gateway later (a new date) is a new signal."""
    when = entry.at.isoformat() if entry.at else ""
    return "list:" + hashlib.sha256(f"{phone_hash}\x1f{when}".encode()).hexdigest()[:40]


async def run(rt: Runtime, job: ClaimedJob) -> Transition:
    account = await due_account(rt, job, _lists)
    if account is None:
        return Transition(fate="done")
    account_id = account.id
    caps = spec(account.gateway).capabilities
    every = timedelta(seconds=rt.settings.optout_sync_seconds)
    next_sync = (sync_job(account_id, utcnow() + every),)
    if account.state == "paused":
        return Transition(fate="done", enqueue=next_sync)
    try:
        gateway = rt.gateways.waiting().gateway(account)
        entries = await gateway.list_optouts(max_pages=rt.settings.inbound_poll_max_pages)
    except Throttled as exc:
        return later(job, throttled_delay(exc.wait), count=False)
    except (GatewayError, AccountUnusable) as exc:
        log.warning("optout_sync_failed", account_id=account_id, error=str(exc))
        return Transition(fate="done", error=str(exc), enqueue=next_sync)
    region = account.region or caps.country

    async def save(session: AsyncSession) -> int:
        stored = 0
        for entry in entries:
            if await _store(session, rt, account, region, entry) is not None:
                stored += 1
        return stored

    stored = await rt.store.run(save)
    if stored:
        log.info("optouts_synced", account_id=account_id, stored=stored, listed=len(entries))
    return Transition(fate="done", enqueue=next_sync)


async def _store(
    session: AsyncSession, rt: Runtime, account: GatewayAccount, region: str, entry: OptOut
) -> int | None:
    phone = seal_sender(rt.vault, entry.phone, region)
    if phone.hash is None:
        return None  # not a number castbridge could ever have texted
    # On a key several locations share, an opt-out belongs to whoever texted that number on
    # it; a number none of them texted is the gateway's business alone (it refuses sends to
    # it, and that refusal is recorded then), not a pile of unroutable signals.
    shared = account.origin != "location" or not account.owner_location_id
    if shared and await inbound_store.last_sender_location(session, account, phone.hash) is None:
        return None
    return await store_optout_signal(
        session,
        account=account,
        region=region,
        vault=rt.vault,
        signal=entry,
        event_key=entry_key(phone.hash, entry),
        source="list",
    )
