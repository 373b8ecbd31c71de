"""The report job: tell HighLevel a message's status, forward only, within its rate limit.

HighLevel answers 403 for several seconds after a Delivery-URL post ("not downstreamed yet",
ghl.md §8): retried on its own schedule, never a reason to refresh a token. A 429 or an empty
bucket is waited out without counting as an attempt; 5xx and network errors back off; a 401
refreshes the token once (in the HighLevel client). Only forward transitions are sent; an
operator's forced replay may try `delivered` after `failed` and records what HighLevel said.
A report already due when a poll or send decides it is made inline by that job (`inline`).
"""

from __future__ import annotations

import time
from dataclasses import replace

from castbridge import metrics
from castbridge.ghl import errors as ghl_errors
from castbridge.limits import Throttled
from castbridge.logging import get_logger
from castbridge.outbound.backoff import not_downstreamed_delay, retry_delay, throttled_delay
from castbridge.outbound.runtime import FINAL_GHL, MessageContext, Runtime, later, utcnow
from castbridge.store.jobs import AttemptRecord, ClaimedJob, Transition

log = get_logger(__name__)


async def run(rt: Runtime, job: ClaimedJob, ctx: MessageContext) -> Transition:
    message = ctx.message
    status = str(job.payload.get("status", ""))
    error = job.payload.get("error")
    forced = bool(job.payload.get("force"))
    if message.ghl_status in FINAL_GHL and status != message.ghl_status and not forced:
        return Transition(
            fate="done",
            attempt=AttemptRecord(
                "report",
                "skipped",
                detail=f"HighLevel already shows {message.ghl_status}; not changed to {status}",
            ),
        )
    if ctx.install_state in (None, "uninstalled", "pending"):
        return Transition(
            fate="done",
            attempt=AttemptRecord(
                "report", "not reported", detail="no HighLevel token for this location"
            ),
        )
    started = time.monotonic()
    try:
        await rt.ghl.update_message_status(
            message.location_id, message.ghl_message_id, status, error
        )
    except Throttled as exc:
        return later(job, throttled_delay(exc.wait), count=False)
    except ghl_errors.GHLError as exc:
        elapsed = int((time.monotonic() - started) * 1000)
        metrics.GHL_REPORTS.labels(type(exc).__name__).inc()
        return _failed(rt, job, exc, elapsed, forced=forced)
    metrics.GHL_REPORTS.labels("ok").inc()
    if status in FINAL_GHL and message.ghl_status not in FINAL_GHL:
        metrics.WEBHOOK_TO_FINAL.labels(status).observe(
            (utcnow() - message.created_at).total_seconds()
        )
    return Transition(
        fate="done",
        message={"ghl_status": status, "ghl_reported_at": utcnow()},
        attempt=AttemptRecord("report", f"forced: HighLevel accepted {status}", http_status=200)
        if forced
        else None,
    )


def due_now(transition: Transition) -> bool:
    """The transition turns its job into a report that is due already."""
    return (
        transition.fate == "next"
        and transition.kind == "report"
        and (transition.run_at is None or transition.run_at <= utcnow())
    )


async def inline(
    rt: Runtime, job: ClaimedJob, ctx: MessageContext, transition: Transition
) -> Transition:
    """Make the due report `transition` hands over now, in the job that decided it, instead of
    through a report job's own claim, context read and outcome (a third of a message's
    statements). Only a report HighLevel accepted (or one with nothing to do) is folded in;
    anything else hands over to the report job as before, at the time this try asks for, so
    retries, 429s and dead reports keep their one path. A crash between HighLevel's answer and
    the outcome reruns the deciding job, which reports the same status again: harmless, since
    reports are forward-only and repeat the status HighLevel already holds."""
    as_report = replace(job, kind="report", lane="report", payload=transition.payload or {})
    try:
        outcome = await run(rt, as_report, ctx)
    except Exception:
        # The deciding job must not crash (and retry its own work) over its report: the report
        # job takes it, with a report's crash handling.
        log.exception("inline_report_failed", job_id=job.id)
        return transition
    if outcome.fate != "done" or (outcome.attempt is not None and transition.attempt is not None):
        return replace(transition, run_at=outcome.run_at or transition.run_at)
    return replace(
        transition,
        fate="done",
        kind=None,
        lane=None,
        payload=None,
        run_at=None,
        message={**(transition.message or {}), **(outcome.message or {})},
        attempt=transition.attempt or outcome.attempt,
    )


def _failed(
    rt: Runtime, job: ClaimedJob, exc: ghl_errors.GHLError, elapsed: int, *, forced: bool
) -> Transition:
    attempt = AttemptRecord(
        "report",
        "retry",
        http_status=exc.status_code,
        code=type(exc).__name__,
        detail=str(exc),
        duration_ms=elapsed,
    )
    if isinstance(exc, ghl_errors.RateLimitedError):
        return later(
            job, retry_delay(rt.settings, 1, exc.retry_after), count=False, attempt=attempt
        )
    if exc.retryable and job.attempts < rt.settings.report_max_attempts:
        if isinstance(exc, ghl_errors.NotDownstreamedError):
            delay = not_downstreamed_delay(job.attempts)
        else:
            delay = min(120.0, retry_delay(rt.settings, job.attempts, exc.retry_after))
        return later(job, delay, attempt=attempt)
    log.warning("report_dead", job_id=job.id, error=str(exc))
    outcome = "forced: HighLevel refused" if forced else "dead"
    return Transition(
        fate="dead",
        error=str(exc),
        attempt=AttemptRecord(
            "report",
            outcome,
            http_status=exc.status_code,
            code=type(exc).__name__,
            detail=str(exc),
            duration_ms=elapsed,
        ),
    )
