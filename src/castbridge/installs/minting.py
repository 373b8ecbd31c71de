"""Location tokens of an agency install, minted by durable, retried jobs.

A bulk install can cover hundreds of sub-accounts; minting each at HighLevel's pace takes
minutes and any one call may meet a 429 or a 5xx. Each location is therefore its own job
(`mint`, singleton per location), retried with backoff, and the agency's list of installed
locations is read by a job too (`company_sync`) when the OAuth callback could not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from castbridge.ghl.client import GHLClient
from castbridge.ghl.errors import GHLError
from castbridge.installs.jobs import mint_job
from castbridge.limits import Throttled
from castbridge.logging import get_logger
from castbridge.outbound.backoff import retry_delay, throttled_delay
from castbridge.outbound.runtime import Runtime, later
from castbridge.store import events, installations, jobs
from castbridge.store.db import Store
from castbridge.store.jobs import ClaimedJob, Transition

log = get_logger(__name__)

# A location HighLevel keeps refusing to mint for (a 5xx, a 429) is tried for this long.
MINT_HORIZON = timedelta(hours=24)


async def queue_company_locations(store: Store, ghl: GHLClient, company_id: str) -> list[str]:
    """List the agency's installed locations (every page, by `count`) and queue a mint job for
    each that has no token yet; returns the location ids queued."""
    located = await ghl.installed_locations(None, company_id)
    targets = [loc.id for loc in located if loc.is_installed is not False]
    queued: list[str] = []
    async with store.write() as session:
        for location_id in targets:
            if await installations.mark_pending(session, location_id, company_id):
                await jobs.enqueue(session, mint_job(location_id, company_id))
                queued.append(location_id)
    return queued


async def mint(rt: Runtime, job: ClaimedJob) -> Transition:
    location_id = job.location_id or ""
    async with rt.store.read() as session:
        current = await installations.get_installation(session, location_id)
        company_id = str(job.payload.get("company_id") or (current.company_id if current else ""))
        company = (
            await installations.get_company_installation(session, company_id)
            if company_id
            else None
        )
    if current is not None and current.active:
        return Transition(fate="done")
    if company is None or not company.active:
        return Transition(fate="done", error="no active agency installation to mint from")
    try:
        tokens = await rt.ghl.mint_location_token(company_id, location_id)
    except Throttled as exc:
        return later(job, throttled_delay(exc.wait), count=False)
    except GHLError as exc:
        too_old = datetime.now(UTC) - job.created_at > MINT_HORIZON
        log.warning("location_token_failed", location_id=location_id, error=str(exc))
        if exc.retryable and not too_old:
            return later(
                job, retry_delay(rt.settings, job.attempts, exc.retry_after), error=str(exc)
            )
        return Transition(fate="dead", error=str(exc))

    async def _store(session: object) -> None:
        from sqlalchemy.ext.asyncio import AsyncSession

        assert isinstance(session, AsyncSession)
        await installations.upsert_installation(session, rt.box, tokens, company_id=company_id)
        await events.add_audit(
            session,
            "install",
            location_id=location_id,
            company_id=company_id,
            detail={"via": "company_token"},
        )
        await jobs.release_held_for_install(session, location_id)

    await rt.store.run(_store)
    log.info("location_token_minted", location_id=location_id, company_id=company_id)
    return Transition(fate="done")


async def company_sync(rt: Runtime, job: ClaimedJob) -> Transition:
    company_id = str(job.payload.get("company_id", ""))
    try:
        queued = await queue_company_locations(rt.store, rt.ghl, company_id)
    except Throttled as exc:
        return later(job, throttled_delay(exc.wait), count=False)
    except GHLError as exc:
        if exc.retryable and datetime.now(UTC) - job.created_at < MINT_HORIZON:
            return later(
                job, retry_delay(rt.settings, job.attempts, exc.retry_after), error=str(exc)
            )
        return Transition(fate="dead", error=str(exc))
    log.info("company_locations_queued", company_id=company_id, count=len(queued))
    return Transition(fate="done")


HANDLERS = {"mint": mint, "company_sync": company_sync}
