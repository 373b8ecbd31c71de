"""The probe job of a paused gateway account: ask the gateway slowly whether it accepts the
key again, resume the account when it does, and fail what waited past the grace."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge import accounts, metrics
from castbridge.gateways.base import GatewayError, InsufficientCreditsError
from castbridge.gateways.directory import AccountUnusable
from castbridge.limits import Throttled
from castbridge.logging import get_logger
from castbridge.outbound.backoff import throttled_delay
from castbridge.outbound.builders import report_job
from castbridge.outbound.runtime import Runtime, later
from castbridge.store import accounts as account_store
from castbridge.store import jobs, messages
from castbridge.store.jobs import AttemptRecord, ClaimedJob, Transition

log = get_logger(__name__)


async def probe(rt: Runtime, job: ClaimedJob) -> Transition:
    account_id = job.account_id or 0
    async with rt.store.read() as session:
        row = await account_store.get(session, account_id)
    if row is None or row.state != "paused":
        return Transition(fate="done")
    try:
        gateway = rt.gateways.gateway(row)
        check = await gateway.verify_credentials()
        if (row.state_code or "").startswith("credits:"):
            balance = check.balance or await gateway.balance()
            if balance.amount <= 0:
                raise InsufficientCreditsError(
                    f"still no credits (balance {balance.amount:g} {balance.currency})",
                    code="NO_CREDITS",
                )
    except Throttled as exc:
        return later(job, throttled_delay(exc.wait), count=False)
    except (GatewayError, AccountUnusable) as exc:
        refused = isinstance(exc, AccountUnusable) or exc.pauses_account
        reason = exc.message if refused else row.state_reason or str(exc)
        await rt.store.run(lambda s: _still_paused(rt, s, row.id, row.probes, reason))
        gap = accounts.probe_gap(rt.settings, row.probes + 1).total_seconds()
        log.info("account_probe_refused", account_id=row.id, next_in=gap)
        return later(job, gap, count=False, error=reason)
    await rt.store.run(lambda s: accounts.resume(s, row.id, by="probe"))
    metrics.ACCOUNT_RESUMES.labels("probe").inc()
    rt.gateways.forget(row.id)
    return Transition(fate="done")


async def _still_paused(
    rt: Runtime, session: AsyncSession, account_id: int, probes: int, reason: str
) -> None:
    """Record the probe, and fail (with a report) the held messages past the grace."""
    now = datetime.now(UTC)
    await account_store.change(
        session,
        account_id,
        probes=probes + 1,
        next_probe_at=now + accounts.probe_gap(rt.settings, probes + 1),
    )
    grace = timedelta(seconds=rt.settings.account_hold_grace_seconds)
    expired = await messages.held_past(session, account_id, now - grace)
    if not expired:
        return
    text = (
        f"The SMS gateway account is refused ({reason}), and the message waited longer than "
        f"{int(grace.total_seconds() // 60)} minutes, so it was not sent. Fix the account "
        "(its key or credits), then send the message again."
    )
    for message in expired:
        await messages.update_message(
            session,
            message.id,
            {
                "status": "failed",
                "error_code": "ACCOUNT_PAUSED",
                "error_message": text,
                "held": None,
            },
            only_if_status=frozenset({"queued"}),
        )
        await messages.record_attempt(
            session,
            message.id,
            None,
            AttemptRecord("send", "failed", code="ACCOUNT_PAUSED", detail=text),
        )
        report = report_job(
            rt.settings,
            location_id=message.location_id,
            created_at=message.created_at,
            status="failed",
            code="ACCOUNT_PAUSED",
            text=text,
        )
        await jobs.enqueue(session, replace(report, message_id=message.id))
    await jobs.cancel_message_sends(session, [m.id for m in expired])
    metrics.MESSAGES_FINAL.labels("failed").inc(len(expired))
