"""HighLevel webhooks: the Delivery URL and the app's default webhook URL (INSTALL/UNINSTALL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from castbridge import metrics
from castbridge.ghl.signature import SignatureError, verify
from castbridge.intake import DeliveryPayload, accept_delivery
from castbridge.logging import get_logger
from castbridge.store import installations
from castbridge.web._body import parse_json_object, read_limited, validate_model
from castbridge.web.deps import resources_of

log = get_logger(__name__)
router = APIRouter(tags=["webhooks"])


class AppEvent(BaseModel):
    """An app lifecycle event (ghl.md §5); only `type` is required, the rest depends on it."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1, max_length=64)
    appId: str | None = Field(None, max_length=128)
    locationId: str | None = Field(None, max_length=64)
    companyId: str | None = Field(None, max_length=64)
    userId: str | None = Field(None, max_length=64)
    timestamp: str | None = None
    webhookId: str | None = Field(None, max_length=128)


class DeliveryAck(BaseModel):
    ok: bool = True
    messageId: str
    status: str = Field(description="queued, failed (refused at intake, HighLevel told why), ...")
    duplicate: bool = False
    error: str | None = None


class EventAck(BaseModel):
    ok: bool = True
    handled: bool
    detail: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Body is not a UTF-8 JSON object"},
    401: {"description": "Missing or invalid signature, or a stale timestamp"},
    413: {"description": "Body too large"},
    422: {"description": "A required field is missing or malformed"},
    503: {"description": "Temporarily unable to handle it; nothing was acknowledged, retry"},
}


def _verify_or_401(request: Request, raw: bytes, *, allow_rsa: bool, endpoint: str) -> str | None:
    resources = resources_of(request)
    try:
        scheme: str | None = verify(
            raw, request.headers, resources.webhook_keys, allow_rsa=allow_rsa
        )
    except SignatureError as exc:
        if resources.settings.ghl_require_signature:
            metrics.WEBHOOKS.labels(endpoint, "bad_signature").inc()
            log.warning("webhook_rejected", endpoint=endpoint, reason=exc.reason)
            raise HTTPException(401, f"webhook signature rejected: {exc.reason}") from None
        scheme = None  # GHL_REQUIRE_SIGNATURE=false: local testing only
    return scheme


def _check_timestamp(request: Request, timestamp: str | None) -> None:
    """Signed bodies replay byte for byte; an old timestamp marks a replay (ghl.md §4)."""
    if not timestamp:
        return
    try:
        sent = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(422, "timestamp is not an ISO-8601 date-time") from None
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    max_age = timedelta(seconds=resources_of(request).settings.webhook_max_age_seconds)
    skew = abs(datetime.now(UTC) - sent)
    if skew > max_age:
        raise HTTPException(401, "webhook timestamp is more than 5 minutes from now (replay?)")


@router.post(
    "/webhooks/ghl/delivery",
    summary="HighLevel Delivery URL: an outbound SMS to send",
    response_model=DeliveryAck,
    responses=ERROR_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": DeliveryPayload.model_json_schema()}},
        }
    },
)
async def delivery(request: Request) -> DeliveryAck:
    resources = resources_of(request)
    raw = await read_limited(request, resources.settings.max_body_bytes)
    _verify_or_401(request, raw, allow_rsa=False, endpoint="delivery")
    payload = validate_model(DeliveryPayload, parse_json_object(raw))
    _check_timestamp(request, payload.timestamp)
    async with resources.sessions.begin() as session:
        if payload.webhookId and not await installations.remember_webhook(
            session, payload.webhookId, "delivery"
        ):
            metrics.WEBHOOKS.labels("delivery", "replay").inc()
            return DeliveryAck(messageId=payload.messageId, status="duplicate", duplicate=True)
        result = await accept_delivery(session, payload, resources.settings)
    if resources.worker is not None:
        resources.worker.wake()
    metrics.WEBHOOKS.labels("delivery", "duplicate" if result.duplicate else result.status).inc()
    log.info(
        "delivery_received",
        message_id=payload.messageId,
        location_id=payload.locationId,
        status=result.status,
        duplicate=result.duplicate,
        error_code=result.error_code,
    )
    return DeliveryAck(
        messageId=payload.messageId,
        status="duplicate" if result.duplicate else result.status,
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
            "content": {"application/json": {"schema": AppEvent.model_json_schema()}},
        }
    },
)
async def events(request: Request) -> EventAck:
    from castbridge import installs

    resources = resources_of(request)
    raw = await read_limited(request, resources.settings.max_body_bytes)
    _verify_or_401(
        request, raw, allow_rsa=resources.settings.ghl_accept_legacy_rsa, endpoint="events"
    )
    event = validate_model(AppEvent, parse_json_object(raw))
    _check_timestamp(request, event.timestamp)
    try:
        outcome = await installs.handle_event_once(resources, event)
    except installs.EventRetry as exc:
        metrics.WEBHOOKS.labels("events", "retry").inc()
        log.warning("event_failed_retry", event_type=event.type, error=str(exc))
        raise HTTPException(503, "the event could not be handled now; retry later") from None
    if outcome.duplicate:
        metrics.WEBHOOKS.labels("events", "replay").inc()
        return EventAck(handled=False, detail=outcome.detail)
    metrics.WEBHOOKS.labels("events", event.type.lower()[:32]).inc()
    return EventAck(handled=outcome.handled, detail=outcome.detail)
