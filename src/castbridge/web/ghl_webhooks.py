"""HighLevel webhooks: the Delivery URL and the app's default webhook URL (INSTALL/UNINSTALL).

What HighLevel gets back decides whether a message lives (ghl.md §2): 200 once stored (a
duplicate too); 429 + Retry-After within ~2 s when castbridge cannot store it right now (the
only answer HighLevel retries; a 5xx is final and the message would be lost); 401 for a bad
signature; 400 only for a body that can never succeed (not JSON, no readable messageId or
locationId). A post is never refused for the age of its timestamp: HighLevel's retries carry
the original bytes, timestamp included, about 10 minutes apart.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from castbridge import metrics
from castbridge.ghl.models import AppEvent, ProviderOutboundMessage
from castbridge.ghl.signature import SignatureError, verify
from castbridge.installs import handle_event
from castbridge.logging import get_logger
from castbridge.outbound.intake import clean_json
from castbridge.store.db import StoreBusy, unavailable
from castbridge.web._body import parse_json_object, read_limited
from castbridge.web.deps import resources_of

log = get_logger(__name__)
router = APIRouter(tags=["webhooks"])

RETRY_AFTER_SECONDS = 60


class DeliveryAck(BaseModel):
    ok: bool = True
    messageId: str
    status: str = Field(
        description="queued, held, failed (refused, HighLevel told why), duplicate or conflict"
    )
    duplicate: bool = False
    error: str | None = None


class EventAck(BaseModel):
    ok: bool = True
    handled: bool
    detail: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Body is not a JSON object, or has no readable messageId/locationId"},
    401: {"description": "Missing or invalid signature"},
    413: {"description": "Body too large"},
    429: {"description": "Cannot store it right now; retry after Retry-After seconds"},
}


def busy(endpoint: str) -> JSONResponse:
    """The answer HighLevel retries: nothing was stored, try again later."""
    metrics.WEBHOOKS.labels(endpoint, "busy").inc()
    return JSONResponse(
        {"error": "temporarily unable to store the webhook; retry later"},
        status_code=429,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _verify_or_401(request: Request, raw: bytes, *, allow_rsa: bool, endpoint: str) -> None:
    resources = resources_of(request)
    try:
        scheme = verify(raw, request.headers, resources.webhook_keys, allow_rsa=allow_rsa)
    except SignatureError as exc:
        if resources.settings.ghl_require_signature:
            metrics.WEBHOOKS.labels(endpoint, "bad_signature").inc()
            log.warning("webhook_rejected", endpoint=endpoint, reason=exc.reason)
            raise HTTPException(401, f"webhook signature rejected: {exc.reason}") from None
        return  # GHL_REQUIRE_SIGNATURE=false: local testing only (warned at start-up)
    log.debug("webhook_verified", endpoint=endpoint, scheme=scheme)


def _readable_delivery(data: dict[str, Any]) -> ProviderOutboundMessage:
    try:
        return ProviderOutboundMessage.model_validate(data)
    except ValidationError:
        raise HTTPException(
            400, "messageId and locationId must be non-empty strings of at most 64 characters"
        ) from None


@router.post(
    "/webhooks/ghl/delivery",
    summary="HighLevel Delivery URL: an outbound SMS to send",
    response_model=DeliveryAck,
    responses=ERROR_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": ProviderOutboundMessage.model_json_schema(by_alias=True)
                }
            },
        }
    },
)
async def delivery(request: Request) -> Any:
    resources = resources_of(request)
    raw = await read_limited(request, resources.settings.max_body_bytes)
    _verify_or_401(request, raw, allow_rsa=False, endpoint="delivery")
    payload = _readable_delivery(clean_json(parse_json_object(raw)))
    try:
        result = await resources.intake.accept(
            payload, wait_at_most=resources.settings.store_timeout_seconds
        )
    except StoreBusy:
        return busy("delivery")
    except Exception as exc:
        # Whatever failed on the way to the database, nothing was stored: HighLevel must retry.
        if not unavailable(exc):
            log.exception("delivery_store_failed", location_id=payload.location_id)
        return busy("delivery")
    if result.status == "queued":
        # With its due time: a burst is spaced into the future, and the worker should look
        # when each send falls due, not at its next poll.
        resources.wake("send", result.send_at)
    elif result.status == "failed":
        resources.wake("report")
    status = (result.held and "held") or result.status
    metrics.WEBHOOKS.labels("delivery", status).inc()
    metrics.DELIVERY_BY_LOCATION.labels(payload.location_id).inc()
    # DEBUG, not INFO: one line per webhook is formatting work nobody reads on the hot path;
    # the message's timeline (`castbridge messages show`) and the metrics above keep the record.
    log.debug(
        "delivery_received",
        message_id=payload.message_id,
        location_id=payload.location_id,
        status=status,
        error_code=result.error_code,
    )
    return DeliveryAck(
        messageId=payload.message_id,
        status=status,
        duplicate=result.duplicate,
        error=result.error_message,
    )


@router.post(
    "/webhooks/ghl/events",
    summary="HighLevel app webhook: INSTALL, UNINSTALL (others acknowledged and ignored)",
    response_model=EventAck,
    responses=ERROR_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": AppEvent.model_json_schema(by_alias=True)}},
        }
    },
)
async def events(request: Request) -> Any:
    resources = resources_of(request)
    raw = await read_limited(request, resources.settings.max_body_bytes)
    _verify_or_401(
        request, raw, allow_rsa=resources.settings.ghl_accept_legacy_rsa, endpoint="events"
    )
    try:
        event = AppEvent.model_validate(clean_json(parse_json_object(raw)))
    except ValidationError:
        raise HTTPException(400, "an app event needs a type of at most 64 characters") from None
    try:
        outcome = await handle_event(resources, event)
    except Exception as exc:
        if not unavailable(exc):
            log.exception("event_failed", event_type=event.type)
        return busy("events")
    metrics.WEBHOOKS.labels(
        "events", "replay" if outcome.duplicate else event.type.lower()[:32]
    ).inc()
    return EventAck(handled=outcome.handled, detail=outcome.detail)
