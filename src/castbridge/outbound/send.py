"""The send job: one attempt at handing a message to its pinned gateway account.

By capability (gateways.md §6):
- a gateway with idempotency keys (Cast) gets every ambiguous outcome (timeout, cut answer,
  any 5xx, an unreadable 2xx) retried under the same key until the send horizon; such a
  message is never reported failed, because the gateway may have billed it;
- any other gateway gets one attempt. The attempt is recorded *before* the request leaves,
  so a crash mid-call can never lead to a blind resend; an ambiguous outcome goes to
  reconciliation (`reconcile.py`), and only a send proven not to have happened is made again.
A self-inflicted rate limit or a gateway 429 is not an attempt: the job waits for capacity.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from castbridge import accounts, metrics
from castbridge.gateways.base import (
    Gateway,
    GatewayError,
    RateLimitedError,
    SendRequest,
    SendResult,
)
from castbridge.gateways.directory import AccountUnusable
from castbridge.inbound.optouts import OPTED_OUT_CODE, refusal_text
from castbridge.inbound.record import with_gateway_optout
from castbridge.limits import HOLD_HORIZON_SECONDS, Throttled, holding
from castbridge.logging import get_logger
from castbridge.outbound.backoff import retry_delay, throttled_delay
from castbridge.outbound.reconcile_gaps import check_gap
from castbridge.outbound.runtime import (
    MessageContext,
    Runtime,
    installed,
    later,
    to_report,
    utcnow,
)
from castbridge.store import messages as message_store
from castbridge.store.jobs import AttemptRecord, ClaimedJob, Transition
from castbridge.store.messages import SENDABLE
from castbridge.store.models import Message

log = get_logger(__name__)

INSTALL_RECHECK_SECONDS = 3.0


async def run(rt: Runtime, job: ClaimedJob, ctx: MessageContext) -> Transition:
    message = ctx.message
    if message.status not in SENDABLE:
        return Transition(fate="done")  # already sent or finished (an operator replay's twin)
    settings = rt.settings
    now = utcnow()
    age = now - message.created_at
    if ctx.install_state in ("uninstalled", "disabled"):
        return Transition(
            fate="cancelled",
            message={
                "status": "cancelled",
                "error_code": "CANCELLED",
                "error_message": "castbridge was uninstalled from this sub-account",
            },
            message_if_status=SENDABLE,
            attempt=AttemptRecord("send", "cancelled", detail="location uninstalled"),
        )
    if not installed(ctx.install_state):
        # The install is still finishing (its OAuth callback, or minting from the agency).
        if age > timedelta(seconds=settings.install_wait_seconds):
            text = (
                "castbridge was not installed for this sub-account in time, so the SMS was not "
                "sent. Finish installing castbridge, then send again."
            )
            return to_report(
                rt,
                message,
                "failed",
                code="NOT_INSTALLED",
                text=text,
                installed=False,
                attempt=AttemptRecord("send", "failed", detail=text),
            )
        return later(job, INSTALL_RECHECK_SECONDS, count=False)
    if ctx.opt_out is not None:
        # castbridge's own suppression: holds even if HighLevel's DND was cleared by hand.
        return to_report(
            rt,
            message,
            "failed",
            code=OPTED_OUT_CODE,
            text=refusal_text(ctx.opt_out),
            attempt=AttemptRecord("send", "failed", code=OPTED_OUT_CODE, detail="opted out"),
        )
    account = ctx.account
    if account is None or (account.state == "retired" and not account.api_key_enc):
        return to_report(
            rt,
            message,
            "failed",
            code=accounts.NO_ACCOUNT_CODE,
            text=accounts.NO_ACCOUNT_TEXT,
            attempt=AttemptRecord("send", "failed", code=accounts.NO_ACCOUNT_CODE),
        )
    if account.state == "paused":
        return _held(rt, job, message, account.state_reason or "the gateway account is paused")
    try:
        gateway = rt.gateways.gateway(account)
    except AccountUnusable as exc:
        # A configuration problem (an undecryptable key): hold and alert, don't crash-loop.
        async with rt.store.write() as session:
            await accounts.pause(session, settings, account.id, exc)
        return later(
            job,
            settings.account_probe_seconds,
            count=False,
            attempt=AttemptRecord("send", "held", code=exc.code, detail=exc.message),
        )
    caps = gateway.capabilities
    horizon = timedelta(seconds=settings.send_horizon_seconds)
    if age > horizon:
        return _past_horizon(rt, message)
    if message.maybe_sent and not caps.idempotency_keys:
        # An earlier attempt may have reached the gateway (a crash, a lost answer): look
        # before sending again.
        return Transition(
            fate="next",
            kind="reconcile",
            lane="status",
            run_at=now,
            payload={"checks": 0, "resends": int(job.payload.get("resends", 0))},
        )
    request = rt.send_request(message, caps.channels[0], int(job.payload.get("generation", 0)))
    if not caps.idempotency_keys:
        # Recorded before the request leaves: after a crash from here on, the job resumes as
        # "maybe sent" and reconciles instead of sending blind.
        await rt.store.run(
            lambda s: message_store.update_message(
                s, message.id, {"maybe_sent": True, "sent_at": now}
            )
        )
    started = time.monotonic()
    try:
        result = await _send_in_turn(gateway, request, f"job:{job.id}")
    except Throttled as exc:
        await _undo_mark(rt, message, caps.idempotency_keys)
        return later(job, throttled_delay(exc.wait), count=False)
    except GatewayError as exc:
        elapsed = int((time.monotonic() - started) * 1000)
        return await _failed(rt, job, message, gateway, exc, elapsed)
    elapsed = int((time.monotonic() - started) * 1000)
    metrics.GATEWAY_SENDS.labels(caps.name, "accepted").inc()
    metrics.ACCOUNT_SENDS.labels(caps.name, str(message.account_id), "accepted").inc()
    log.info(
        "gateway_accepted",
        message_id=message.ghl_message_id,
        location_id=message.location_id,
        gateway=caps.name,
        account_id=account.id,
        gateway_message_id=result.gateway_message_id,
        replayed=result.replayed,
    )
    return accepted(
        rt, message, gateway, result, sent_at=message.sent_at or now, duration_ms=elapsed
    )


async def _send_in_turn(gateway: Gateway, request: SendRequest, holder: str) -> SendResult:
    """Send, waiting in place for a token the pacer booked for this job (it is due within
    HOLD_HORIZON_SECONDS). Requeued instead, the job would come back behind every older due
    job on a busy lane, long after its token, and the booking would be void: under a backlog
    every token would be booked and lost, and nothing sent. Any other refusal is raised."""
    waited = 0.0
    while True:
        try:
            with holding(holder):
                return await gateway.send(request)
        except Throttled as exc:
            # Account, then egress IP: at most one booked wait each.
            if not exc.reserved or waited + exc.wait > 2 * HOLD_HORIZON_SECONDS:
                raise
            await asyncio.sleep(exc.wait)
            waited += exc.wait


def accepted(
    rt: Runtime,
    message: Message,
    gateway: Gateway,
    result: SendResult,
    *,
    sent_at: object,
    duration_ms: int | None = None,
    via: str = "send",
) -> Transition:
    """The gateway took the message: what follows depends on what it can report."""
    caps = gateway.capabilities
    values = {
        "status": "accepted",
        "held": None,
        "maybe_sent": True,
        "sent_at": sent_at,
        "gateway_message_id": result.gateway_message_id,
        "gateway_parts": result.parts,
        "gateway_status": "sent",
        "accepted_at": utcnow(),
        "error_code": None,
        "error_message": None,
    }
    attempt = None
    if result.replayed or via != "send":
        attempt = AttemptRecord(
            via,
            "replayed" if result.replayed else "found",
            gateway_message_id=result.gateway_message_id,
            duration_ms=duration_ms,
        )
    pollable = caps.status_poll and result.gateway_message_id
    if result.sandbox or not caps.delivery_reports or not (pollable or caps.dlr_push):
        # Nothing will ever confirm delivery: a sandbox key's mock id, a gateway with no
        # reports (UGSMS), a send that came back without an id. HighLevel keeps "pending"
        # (it has no "sent"), and castbridge closes the record as sent without a report.
        why = (
            "sandbox key: nothing reached a carrier"
            if result.sandbox
            else f"accepted by {caps.label}; {caps.label} gives no delivery reports"
            if not caps.delivery_reports
            else f"accepted by {caps.label} without a message id; delivery cannot be tracked"
        )
        values.update(status="sent", error_code="NO_DLR", error_message=why, gateway_status="sent")
        metrics.MESSAGES_FINAL.labels("sent").inc()
        return Transition(
            fate="done",
            message=values,
            message_if_status=frozenset({"queued", "dead", "accepted"}),
            attempt=AttemptRecord(
                via,
                "sent, no delivery report",
                detail=why,
                gateway_message_id=result.gateway_message_id,
            ),
        )
    # A pushed report usually comes first; the poll is the fallback (and the only path for
    # gateways without push).
    window = rt.settings.push_report_window_seconds or caps.push_report_window_seconds
    first = window if caps.dlr_push else rt.settings.poll_gaps[0]
    return Transition(
        fate="next",
        kind="poll",
        lane="status",
        run_at=utcnow() + timedelta(seconds=first),
        payload={"channel": message.channel or caps.channels[0]},
        message=values,
        message_if_status=frozenset({"queued", "dead", "accepted"}),
        attempt=attempt,
    )


async def _undo_mark(rt: Runtime, message: Message, idempotent: bool) -> None:
    """The request provably never left: the message is not "maybe sent" after all."""
    if idempotent or message.maybe_sent:
        return
    await rt.store.run(
        lambda s: message_store.update_message(
            s, message.id, {"maybe_sent": False, "sent_at": None}
        )
    )


async def _failed(
    rt: Runtime,
    job: ClaimedJob,
    message: Message,
    gateway: Gateway,
    exc: GatewayError,
    elapsed: int,
) -> Transition:
    caps = gateway.capabilities
    settings = rt.settings
    attempt = AttemptRecord(
        "send",
        "retry",
        http_status=exc.http_status,
        code=exc.code,
        detail=str(exc),
        duration_ms=elapsed,
    )
    metrics.GATEWAY_SENDS.labels(caps.name, type(exc).__name__[:40]).inc()
    metrics.ACCOUNT_SENDS.labels(
        caps.name,
        str(message.account_id),
        "rate_limited" if isinstance(exc, RateLimitedError) else "error",
    ).inc()
    if isinstance(exc, RateLimitedError):
        # The gateway refused before doing anything: not a failed attempt.
        await _undo_mark(rt, message, caps.idempotency_keys)
        return later(job, retry_delay(settings, 1, exc.retry_after), count=False, attempt=attempt)
    if exc.pauses_account:
        await _undo_mark(rt, message, caps.idempotency_keys)
        async with rt.store.write() as session:
            await accounts.pause(session, settings, message.account_id or 0, exc)
        generation = int(job.payload.get("generation", 0))
        return later(
            job,
            settings.account_probe_seconds,
            count=False,
            # Refused outright, so nothing was sent: a fresh key for the next try, because the
            # gateway may answer this key with its cached refusal (see Runtime.reference).
            payload={**job.payload, "generation": generation + 1},
            message={"held": "account"},
            attempt=AttemptRecord(
                "send",
                "held",
                http_status=exc.http_status,
                code=exc.code,
                detail=f"account paused: {exc.message}",
            ),
        )
    if exc.opted_out:
        text = f"The recipient opted out of SMS from this sender ({caps.label}: {exc.message})."
        refused = to_report(
            rt,
            message,
            "failed",
            code="OPTED_OUT",
            text=text,
            attempt=AttemptRecord(
                "send", "failed", http_status=exc.http_status, code="OPTED_OUT", detail=exc.message
            ),
        )
        return with_gateway_optout(refused, message, caps.label)
    if exc.outcome_unknown:
        if caps.idempotency_keys:
            # Retried under the same key until the horizon: the gateway answers a repeat from
            # its cache, so this can never send twice, and "failed" would be a lie if it did
            # send (the user would resend and pay twice).
            return later(
                job,
                retry_delay(settings, job.attempts, exc.retry_after),
                message={"maybe_sent": True, "sent_at": message.sent_at or utcnow()},
                attempt=attempt,
            )
        if caps.reconcile:
            return Transition(
                fate="next",
                kind="reconcile",
                lane="status",
                run_at=utcnow()
                + timedelta(seconds=check_gap(settings.reconcile_settle_seconds, 0)),
                payload={"checks": 0, "resends": int(job.payload.get("resends", 0))},
                attempt=AttemptRecord(
                    "send",
                    "outcome unknown",
                    http_status=exc.http_status,
                    code=exc.code,
                    detail=str(exc),
                    duration_ms=elapsed,
                ),
            )
        text = (
            f"{caps.label} did not confirm the send ({exc.message}), and it cannot be checked: "
            "the message may or may not have been sent. It is not sent again automatically."
        )
        metrics.MESSAGES_FINAL.labels("unknown").inc()
        return Transition(
            fate="done",
            message={
                "status": "unknown",
                "error_code": exc.code or "OUTCOME_UNKNOWN",
                "error_message": text,
            },
            attempt=AttemptRecord(
                "send", "unknown", http_status=exc.http_status, code=exc.code, detail=str(exc)
            ),
        )
    if exc.retryable:
        # Provably not processed (refused connection, DNS): safe to retry on any gateway.
        await _undo_mark(rt, message, caps.idempotency_keys)
        if job.attempts >= settings.send_max_attempts and not message.maybe_sent:
            text = (
                f"{caps.label} could not be reached ({exc.message}) after {job.attempts} "
                "attempts; the message was not sent. Send it again later."
            )
            return to_report(
                rt,
                message,
                "failed",
                code=exc.code or "GATEWAY_UNAVAILABLE",
                text=text,
                values={"status": "dead"},
                attempt=AttemptRecord("send", "dead", code=exc.code, detail=text),
            )
        return later(job, retry_delay(settings, job.attempts, exc.retry_after), attempt=attempt)
    await _undo_mark(rt, message, caps.idempotency_keys)
    text = f"{caps.label}: {exc.message}"
    return to_report(
        rt,
        message,
        "failed",
        code=exc.code,
        text=text,
        attempt=AttemptRecord(
            "send",
            "failed",
            http_status=exc.http_status,
            code=exc.code,
            detail=exc.message,
            duration_ms=elapsed,
        ),
    )


def _held(rt: Runtime, job: ClaimedJob, message: Message, reason: str) -> Transition:
    """The account is paused: wait for it, and fail only what waited longer than the grace
    (and never a message an earlier attempt may have sent)."""
    grace = timedelta(seconds=rt.settings.account_hold_grace_seconds)
    if utcnow() - message.created_at > grace and not message.maybe_sent:
        text = (
            f"The SMS gateway account is refused ({reason}), and the message waited longer than "
            f"{int(grace.total_seconds() // 60)} minutes, so it was not sent. Fix the account "
            "(its key or credits), then send the message again."
        )
        return to_report(
            rt,
            message,
            "failed",
            code="ACCOUNT_PAUSED",
            text=text,
            attempt=AttemptRecord("send", "failed", code="ACCOUNT_PAUSED", detail=text),
        )
    return later(job, rt.settings.account_probe_seconds, count=False, message={"held": "account"})


def _past_horizon(rt: Runtime, message: Message) -> Transition:
    if message.maybe_sent:
        text = (
            "The SMS gateway stopped answering; the message may or may not have been sent. "
            "Check with the gateway before sending it again."
        )
        metrics.MESSAGES_FINAL.labels("unknown").inc()
        return Transition(
            fate="done",
            message={"status": "unknown", "error_code": "OUTCOME_UNKNOWN", "error_message": text},
            message_if_status=SENDABLE,
            attempt=AttemptRecord("send", "unknown", code="OUTCOME_UNKNOWN", detail=text),
        )
    text = (
        "The SMS gateway could not be reached for too long; the message was not sent. "
        "Send it again."
    )
    return to_report(
        rt,
        message,
        "failed",
        code="SEND_HORIZON",
        text=text,
        values={"status": "dead"},
        attempt=AttemptRecord("send", "dead", code="SEND_HORIZON", detail=text),
    )
