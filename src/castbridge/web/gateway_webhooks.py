"""Gateway webhooks (delivery reports, replies, opt-outs): verify by the URL, store once, answer.

Neither CastBrick nor Cellcast documents webhook signing (gateways.md §6), so the unguessable
per-account token in the path is the authentication: an unknown token is 404 and nothing is
stored. Each event in a body is stored once (deduped on the gateway's event or message id) and
applied by a job; the gateway gets its 2xx as soon as the body is safe, because both appear to
retry anything else.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from castbridge import metrics
from castbridge.gateways.base import UnsupportedError, WebhookEvent
from castbridge.gateways.directory import AccountUnusable
from castbridge.gateways.registry import spec
from castbridge.inbound.intake import store_optout_signal, store_reply
from castbridge.logging import get_logger
from castbridge.store import accounts as account_store
from castbridge.store import events as event_store
from castbridge.store import jobs
from castbridge.store.db import StoreBusy, unavailable
from castbridge.store.jobs import NewJob
from castbridge.web._body import read_limited
from castbridge.web.deps import resources_of
from castbridge.web.ghl_webhooks import busy

log = get_logger(__name__)
router = APIRouter(tags=["webhooks"])

# Which job applies a delivery report; replies and opt-out signals become inbound events,
# each with its own job (castbridge.inbound).
JOB_OF_KIND = {"status": ("gateway_event", "status")}


class GatewayAck(BaseModel):
    ok: bool = True
    stored: int
    duplicates: int


@router.post(
    "/webhooks/gateways/{gateway}/{account_token}",
    summary="A gateway's webhook (delivery reports, replies, opt-outs) for one account",
    response_model=GatewayAck,
    responses={404: {"description": "Unknown account token"}, 429: {"description": "Busy"}},
)
async def gateway_webhook(gateway: str, account_token: str, request: Request) -> Any:
    resources = resources_of(request)
    if len(account_token) > 64 or len(gateway) > 24:
        raise HTTPException(404, "unknown webhook")
    raw = await read_limited(request, resources.settings.max_body_bytes)
    async with resources.store.read() as session:
        account = await account_store.by_webhook_token(session, account_token)
    if account is None or account.gateway != gateway or account.state == "retired":
        metrics.WEBHOOKS.labels("gateway", "unknown_token").inc()
        raise HTTPException(404, "unknown webhook")
    try:
        parsed = resources.gateways.gateway(account).parse_webhook(
            raw, request.headers.get("content-type")
        )
    except (ValueError, UnsupportedError, AccountUnusable) as exc:
        # Kept for the operator, never acted on; the gateway must not retry it forever.
        digest = hashlib.sha256(raw).hexdigest()[:40]
        parsed = [
            WebhookEvent(
                key=f"unreadable:{digest}",
                kind="ignored",
                event_type=f"unreadable: {type(exc).__name__}",
            )
        ]
    stored = duplicates = 0
    region = account.region or spec(account.gateway).capabilities.country
    try:
        async with resources.store.write(
            wait_at_most=resources.settings.store_timeout_seconds
        ) as session:
            body_enc = resources.vault.encrypt(raw.decode("utf-8", errors="replace"))
            for event in parsed:
                event_id = await event_store.store_gateway_event(
                    session,
                    account_id=account.id,
                    event_key=event.key,
                    kind=event.kind,
                    event_type=event.event_type,
                    body_enc=body_enc,
                )
                if event_id is None:
                    duplicates += 1
                    continue
                stored += 1
                if event.kind == "inbound" and event.inbound is not None:
                    await store_reply(
                        session,
                        account=account,
                        region=region,
                        vault=resources.vault,
                        sms=event.inbound,
                        source="webhook",
                        gateway_event_id=event_id,
                    )
                elif event.kind == "optout" and event.optout is not None:
                    await store_optout_signal(
                        session,
                        account=account,
                        region=region,
                        vault=resources.vault,
                        signal=event.optout,
                        event_key=event.key,
                        source="webhook",
                        gateway_event_id=event_id,
                    )
                elif event.kind in JOB_OF_KIND:
                    kind, lane = JOB_OF_KIND[event.kind]
                    await jobs.enqueue(
                        session,
                        NewJob(
                            kind=kind,
                            lane=lane,
                            run_at=_now(),
                            account_id=account.id,
                            payload={"event_id": event_id},
                        ),
                    )
    except StoreBusy:
        return busy("gateway")
    except Exception as exc:
        if not unavailable(exc):
            log.exception("gateway_webhook_store_failed", gateway=gateway)
        return busy("gateway")
    resources.wake("status")
    resources.wake("inbound")
    metrics.WEBHOOKS.labels("gateway", "stored" if stored else "duplicate").inc()
    return GatewayAck(stored=stored, duplicates=duplicates)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
