"""Delivery status: polling the gateway, and applying the reports gateways push.

Statuses only move forward (gateways.md §6): a message settles once, by whichever of a poll
and a pushed report is first; the other then changes nothing. `delivered` is reported only on
the gateway's delivery receipt. With no receipt by the horizon castbridge never claims
delivery: HighLevel stays at pending (or is told `failed`, as configured).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from castbridge import metrics
from castbridge.gateways.base import DeliveryStatus, GatewayError, NotFoundError, UnsupportedError
from castbridge.gateways.directory import AccountUnusable
from castbridge.inbound.record import with_gateway_optout
from castbridge.limits import Throttled
from castbridge.logging import get_logger
from castbridge.outbound.backoff import throttled_delay
from castbridge.outbound.builders import report_job
from castbridge.outbound.runtime import MessageContext, Runtime, later, to_report, utcnow
from castbridge.store import events as event_store
from castbridge.store import jobs as job_store
from castbridge.store import messages as message_store
from castbridge.store.jobs import AttemptRecord, ClaimedJob, Transition
from castbridge.store.models import Message

log = get_logger(__name__)

POLL_NOT_FOUND_LIMIT = 5  # consecutive "unknown id" answers before polling stops
ACCEPTED = frozenset({"accepted"})
# A pushed report that names a message not recorded yet (its send's answer is still on its way
# back) is looked at again this often, this many times.
UNMATCHED_GAP_SECONDS = 5.0
UNMATCHED_TRIES = 120


def final_transition(
    rt: Runtime, message: Message, status: DeliveryStatus, *, via: str
) -> tuple[str, Transition]:
    """The message's end from a terminal gateway status, as a report transition."""
    if status.state == "delivered":
        metrics.DELIVERY_LATENCY.observe((utcnow() - message.created_at).total_seconds())
        return "delivered", to_report(
            rt,
            message,
            "delivered",
            values={"gateway_status": status.raw_status, "error_code": None, "error_message": None},
            if_status=ACCEPTED,
        )
    opted_out = status.opted_out
    if opted_out:
        code, text = "OPTED_OUT", "The recipient opted out of SMS from this business."
    else:
        reason = status.error_message or status.error_code or status.raw_status
        code = status.error_code or status.raw_status.upper()
        text = f"Carrier did not deliver the SMS: {reason}"
    failed = to_report(
        rt,
        message,
        "failed",
        code=code,
        text=text,
        values={"gateway_status": status.raw_status},
        if_status=ACCEPTED,
        attempt=AttemptRecord(
            via,
            "failed",
            code=code,
            detail=status.error_message,
            gateway_message_id=status.gateway_message_id,
        ),
    )
    if opted_out:
        label = message.gateway or "the SMS gateway"
        return "failed", with_gateway_optout(failed, message, label)
    return "failed", failed


async def poll(rt: Runtime, job: ClaimedJob, ctx: MessageContext) -> Transition:
    message = ctx.message
    if message.status != "accepted" or ctx.account is None or not message.gateway_message_id:
        return Transition(fate="done")  # settled already (a pushed report came first)
    now = utcnow()
    accepted_at = message.accepted_at or message.created_at
    past_horizon = now - accepted_at > timedelta(seconds=rt.settings.status_poll_horizon_seconds)
    not_found = int(job.payload.get("not_found", 0))
    try:
        gateway = rt.gateways.gateway(ctx.account)
        status = await gateway.status(
            message.gateway_message_id,
            str(job.payload.get("channel") or message.channel or "sms"),
            to_e164=rt.vault.open(message.phone_enc),
            sent_at=message.sent_at,
        )
    except Throttled as exc:
        return later(job, throttled_delay(exc.wait), count=False)
    except UnsupportedError:
        return _no_report(rt, message, "the gateway has no status to poll")
    except (GatewayError, AccountUnusable) as exc:
        not_found = not_found + 1 if isinstance(exc, NotFoundError) else 0
        if past_horizon or not_found >= POLL_NOT_FOUND_LIMIT:
            return _no_report(rt, message, f"status unavailable: {exc}")
        return _repoll(
            rt,
            job,
            not_found=not_found,
            attempt=AttemptRecord(
                "poll", "error", code=getattr(exc, "code", None), detail=str(exc)
            ),
        )
    if status.terminal:
        _, transition = final_transition(rt, message, status, via="poll")
        return transition
    if past_horizon:
        return _no_report(rt, message, f"still {status.raw_status} at the horizon")
    values = (
        {"gateway_status": status.raw_status}
        if status.raw_status != message.gateway_status
        else None
    )
    return _repoll(rt, job, not_found=0, message=values)


def _repoll(
    rt: Runtime,
    job: ClaimedJob,
    *,
    not_found: int,
    message: dict[str, Any] | None = None,
    attempt: AttemptRecord | None = None,
) -> Transition:
    gaps = rt.settings.poll_gaps
    polls = int(job.payload.get("polls", 0)) + 1
    gap = gaps[min(polls, len(gaps) - 1)]
    return later(
        job,
        gap,
        count=False,  # a pending status is not a failure
        payload={**job.payload, "polls": polls, "not_found": not_found},
        message=message,
        message_if_status=ACCEPTED if message else None,
        attempt=attempt,
    )


def _no_report(rt: Runtime, message: Message, detail: str) -> Transition:
    """No delivery report by the horizon: never claim delivery; tell HighLevel as configured."""
    text = "No delivery report arrived from the carrier in time; delivery could not be confirmed."
    values = {"status": "unknown", "error_code": "NO_DLR", "error_message": text}
    attempt = AttemptRecord("poll", "unknown", detail=detail)
    if rt.settings.status_on_horizon == "failed":
        return to_report(
            rt,
            message,
            "failed",
            code="NO_DLR",
            text=text,
            values=values,
            if_status=ACCEPTED,
            attempt=attempt,
        )
    metrics.MESSAGES_FINAL.labels("unknown").inc()
    return Transition(fate="done", message=values, message_if_status=ACCEPTED, attempt=attempt)


async def apply_event(rt: Runtime, job: ClaimedJob) -> Transition | None:
    """Apply one stored gateway webhook event (a `gateway_event` job, lane status). Returns
    None when it applied its outcome itself (it writes to a message that is not its own)."""
    event_id = int(job.payload["event_id"])
    async with rt.store.read() as session:
        event = await event_store.gateway_event(session, event_id)
        account = None
        if event is not None:
            from castbridge.store import accounts as account_store

            account = await account_store.get(session, event.account_id)
    if event is None or account is None:
        return Transition(fate="done")
    try:
        gateway = rt.gateways.gateway(account)
        body = rt.vault.open(event.body_enc).encode("utf-8")
        parsed = [
            e for e in gateway.parse_webhook(body, "application/json") if e.key == event.event_key
        ]
    except (AccountUnusable, ValueError, GatewayError) as exc:
        why = str(exc)
        await rt.store.run(lambda s: event_store.mark_gateway_event(s, event_id, "ignored", why))
        return Transition(fate="done")
    if not parsed or parsed[0].status is None:
        # Inbound messages and opt-outs are kept for two-way handling; other types ignored.
        return Transition(fate="done")
    status = parsed[0].status
    async with rt.store.read() as session:
        message = await message_store.by_gateway_id(session, account.id, status.gateway_message_id)
    if message is None:
        tries = int(job.payload.get("tries", 0)) + 1
        if tries >= UNMATCHED_TRIES:
            await rt.store.run(
                lambda s: event_store.mark_gateway_event(
                    s, event_id, "unmatched", "no message with this gateway id"
                )
            )
            return Transition(fate="done")
        # The report may have overtaken the send's answer (a race): the message learns its
        # gateway id when that answer is recorded.
        return later(
            job, UNMATCHED_GAP_SECONDS, count=False, payload={**job.payload, "tries": tries}
        )
    if not status.terminal:
        values = {"gateway_status": status.raw_status}
        transition = Transition(fate="done", message=values, message_if_status=ACCEPTED)
    else:
        outcome, end = final_transition(rt, message, status, via="push")
        # The event job is not the message's own: its report is a new job, and the message's
        # queued fallback poll is closed in the same transaction.
        report = report_job(
            rt.settings,
            location_id=message.location_id,
            created_at=message.created_at,
            status=outcome,
            code=(end.payload or {}).get("error", {}).get("code"),
            text=(end.payload or {}).get("error", {}).get("message"),
        )
        from dataclasses import replace

        transition = Transition(
            fate="done",
            message=end.message,
            message_if_status=ACCEPTED,
            attempt=end.attempt,
            enqueue=(replace(report, message_id=message.id),),
            close_kinds=("poll",),
        )

    async def _apply(session: object) -> bool:
        from sqlalchemy.ext.asyncio import AsyncSession

        assert isinstance(session, AsyncSession)
        done = await job_store.apply(session, job, rt.worker_id, transition, message_id=message.id)
        await event_store.mark_gateway_event(session, event_id, "applied")
        return done

    await rt.store.run(_apply)
    return None
