"""Reconciliation: after an ambiguous send on a gateway without idempotency keys, find out from
the gateway whether the message went out, and send again only if it provably did not.

The gateway's records (Cellcast's report list by our `customString`, CastBrick's list by phone
and time) are asked a few times: a match means "sent" (then tracked like any send); a
*conclusive* absence, seen after the records had time to show the send, means "not sent" and
the message is sent again; anything else is asked again later, up to the send horizon, after
which the message is left `unknown` for the operator (HighLevel keeps "pending").
"""

from __future__ import annotations

from datetime import timedelta

from castbridge import metrics
from castbridge.gateways.base import GatewayError
from castbridge.gateways.directory import AccountUnusable
from castbridge.limits import Throttled
from castbridge.outbound.backoff import throttled_delay
from castbridge.outbound.reconcile_gaps import check_gap
from castbridge.outbound.runtime import MessageContext, Runtime, later, utcnow
from castbridge.outbound.send import accepted
from castbridge.store import messages as message_store
from castbridge.store.jobs import AttemptRecord, ClaimedJob, Transition
from castbridge.store.messages import SENDABLE

# How far before the recorded attempt the gateway's records are searched (clock skew).
SEARCH_MARGIN = timedelta(minutes=2)
MAX_RESENDS = 2


async def run(rt: Runtime, job: ClaimedJob, ctx: MessageContext) -> Transition:
    message = ctx.message
    if message.status not in SENDABLE or ctx.account is None:
        return Transition(fate="done")
    try:
        # A lookup may read several pages in a row: wait for tokens instead of restarting.
        gateway = rt.gateways.waiting().gateway(ctx.account)
    except AccountUnusable as exc:
        return later(
            job,
            rt.settings.account_probe_seconds,
            count=False,
            attempt=AttemptRecord("reconcile", "held", code=exc.code, detail=exc.message),
        )
    checks = int(job.payload.get("checks", 0))
    resends = int(job.payload.get("resends", 0))
    sent_at = message.sent_at or message.created_at
    now = utcnow()
    request = rt.send_request(message, gateway.capabilities.channels[0])
    # The window in which the ambiguous attempt can have reached the gateway: from when it
    # started to when its call must have ended (the gateway's timeout). Adapters widen it by
    # their own clock margins.
    timeout = rt.gateways.defaults[ctx.account.gateway].timeout_seconds
    until = min(now, sent_at + timedelta(seconds=timeout + 5))
    try:
        found = await gateway.find_sent(request, since=sent_at - SEARCH_MARGIN, until=until)
    except Throttled as exc:
        return later(job, throttled_delay(exc.wait), count=False)
    except GatewayError as exc:
        return _again(rt, job, checks, resends, f"lookup failed: {exc}", exc.code)
    if found.found is not None and found.found.gateway_message_id:
        # Two identical texts to one number in one window look alike at the gateway: a match
        # already claimed by another message is not ours (CastBrick has no reference field).
        async with rt.store.read() as session:
            owner = await message_store.by_gateway_id(
                session, ctx.account.id, found.found.gateway_message_id
            )
        if owner is not None and owner.id != message.id:
            return _again(rt, job, checks, resends, "the only match belongs to another message")
    if found.found is not None:
        metrics.RECONCILED.labels(gateway.capabilities.name, "found").inc()
        return accepted(rt, message, gateway, found.found, sent_at=sent_at, via="reconcile")
    settled = (now - sent_at).total_seconds() >= rt.settings.reconcile_settle_seconds
    if found.conclusive and settled and checks >= 1:
        if resends >= MAX_RESENDS:
            return _unknown(message.id, gateway.capabilities.label, "resent too often already")
        metrics.RECONCILED.labels(gateway.capabilities.name, "not_sent").inc()
        return Transition(
            fate="next",
            kind="send",
            lane="send",
            run_at=now,
            payload={"resends": resends + 1},
            message={"maybe_sent": False, "sent_at": None},
            message_if_status=SENDABLE,
            attempt=AttemptRecord(
                "reconcile",
                "not sent: sending again",
                detail=f"{gateway.capabilities.label} has no record of the send",
            ),
        )
    return _again(rt, job, checks, resends, "not found yet" if found.conclusive else "undecided")


def _again(
    rt: Runtime, job: ClaimedJob, checks: int, resends: int, detail: str, code: str | None = None
) -> Transition:
    message_created = job.created_at
    if utcnow() - message_created > timedelta(seconds=rt.settings.send_horizon_seconds):
        return _unknown(None, "the gateway", detail)
    gap = check_gap(rt.settings.reconcile_settle_seconds, checks)
    return later(
        job,
        gap,
        count=False,
        payload={"checks": checks + 1, "resends": resends},
        attempt=AttemptRecord("reconcile", "retry", code=code, detail=detail)
        if code is not None
        else None,
    )


def _unknown(_message_id: int | None, label: str, detail: str) -> Transition:
    text = (
        f"The send could not be confirmed with {label}: the message may or may not have been "
        "sent. It is not sent again automatically; check with the gateway."
    )
    metrics.MESSAGES_FINAL.labels("unknown").inc()
    return Transition(
        fate="done",
        message={"status": "unknown", "error_code": "OUTCOME_UNKNOWN", "error_message": text},
        message_if_status=SENDABLE,
        attempt=AttemptRecord("reconcile", "unknown", detail=detail),
    )
