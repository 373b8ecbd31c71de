"""The DND job: mirror an opt-out row's current state onto the HighLevel contact's SMS
do-not-disturb (`active` after STOP, `inactive` after START), idempotently and retried like
every HighLevel call. castbridge's own suppression does not depend on it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.ghl import errors as ghl_errors
from castbridge.ghl.models import DndStatus
from castbridge.inbound import contacts
from castbridge.inbound.optouts import describe
from castbridge.limits import Throttled
from castbridge.logging import get_logger
from castbridge.outbound.backoff import retry_delay, throttled_delay
from castbridge.outbound.runtime import Runtime, installed, later
from castbridge.store import installations
from castbridge.store import optouts as optout_store
from castbridge.store.jobs import ClaimedJob, Transition

log = get_logger(__name__)

DND_CODE = "castbridge"


async def run(rt: Runtime, job: ClaimedJob) -> Transition:
    optout_id = int(job.payload["optout_id"])
    async with rt.store.read() as session:
        row = await optout_store.get(session, optout_id)
        install = await installations.get_installation(session, row.location_id) if row else None
    if row is None:
        return Transition(fate="done")
    wanted: DndStatus = "active" if row.opted_out else "inactive"
    if row.ghl_dnd == wanted:
        return Transition(fate="done")
    if install is None or not installed(install.state):
        # Nobody to tell; castbridge's own suppression holds regardless.
        return Transition(fate="done", error="location not installed: HighLevel DND not set")
    signal_at = row.at
    try:
        ref = await contacts.resolve(
            rt, row.location_id, rt.vault.open(row.phone_enc), row.phone_hash, conversation=False
        )
        reason = f"Opted out of SMS: {describe(row)}" if row.opted_out else None
        await rt.ghl_in_a_row.set_sms_dnd(
            row.location_id, ref.contact_id, wanted, message=reason, code=DND_CODE
        )
    except Throttled as exc:
        return later(job, throttled_delay(exc.wait), count=False)
    except ghl_errors.GHLError as exc:
        if isinstance(exc, ghl_errors.PermanentRequestError) and not job.payload.get("relinked"):
            # A cached contact HighLevel no longer has: find or create it again.
            await contacts.forget(rt, row.location_id, row.phone_hash)
            return later(job, 0.0, count=False, payload={**job.payload, "relinked": True})
        if isinstance(exc, ghl_errors.RateLimitedError):
            return later(job, retry_delay(rt.settings, 1, exc.retry_after), count=False)
        if exc.retryable and job.attempts < rt.settings.inbound_max_attempts:
            delay = retry_delay(rt.settings, job.attempts, exc.retry_after)
            return later(job, delay, error=str(exc))
        log.warning("dnd_dead", optout_id=optout_id, location_id=row.location_id, error=str(exc))
        return Transition(fate="dead", error=str(exc))
    async with rt.store.read() as session:
        current = await optout_store.get(session, optout_id)
    if current is not None and current.at != signal_at:
        # A newer STOP or START came in while this ran: mirror that one too.
        return later(job, 0.0, count=False)

    async def note(session: AsyncSession) -> None:
        await optout_store.set_ghl_dnd(session, optout_id, wanted, signal_at)

    log.info("dnd_set", location_id=row.location_id, optout_id=optout_id, dnd=wanted)
    return Transition(fate="done", also=note)
