"""CastBrick webhook bodies → WebhookEvents, parsed defensively (pure; no I/O).

CastBrick documents the event types (`SmsSent`, `SmsDelivered`, `SmsFailed`, `DeliveryReceipt`,
`InboundMessage`, `OptOut`, `LowBalance`, contact and campaign events) but **no body and no
signature anywhere public** (gateways.md §2, uncertain). So this parser promises little:

- the body is one JSON object, a JSON array of them, or a form-encoded flat object;
- the event type is under `eventType`, `event`, `type` (or `event_type`), in any case and
  spelling (`SmsDelivered`, `sms.delivered`, `SMS_DELIVERED` are one type);
- the payload is under `data` (or `payload`, `message`), else the top level;
- fields are read in every spelling the API uses elsewhere (`messageId`/`id`,
  `recipientPhone`/`phone`, `message`/`content`/`text`, `createdAt`/`timestamp` …).

Event types castbridge acts on become `status`, `inbound` or `optout` events; everything else
(`LowBalance`, contact and campaign events, types we have never seen) is `ignored`: stored,
never acted on. An event that names a type we act on but lacks what we need (a status without
a message id, an inbound without a sender) is `ignored` too rather than guessed at.

Dedupe key, stable for the same event however often CastBrick retries it: its event id when
the body carries one; else message id + event type + status; else a hash of the event's JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from pydantic import TypeAdapter, ValidationError

from castbridge.gateways.base import (
    DeliveryStatus,
    InboundSms,
    OptOut,
    WebhookEvent,
)
from castbridge.gateways.castbrick.errors import cut
from castbridge.gateways.castbrick.status import to_delivery_status

# The event types castbridge registers for (register_webhooks) and what each becomes.
STATUS_EVENTS = ("SmsSent", "SmsDelivered", "SmsFailed", "DeliveryReceipt")
INBOUND_EVENT = "InboundMessage"
OPTOUT_EVENT = "OptOut"
LOW_BALANCE_EVENT = "LowBalance"
USED_EVENT_TYPES: tuple[str, ...] = (
    *STATUS_EVENTS,
    INBOUND_EVENT,
    OPTOUT_EVENT,
    LOW_BALANCE_EVENT,
)

_KEY_CHARS = 200
_TEXT_CHARS = 10_000
_DATETIME = TypeAdapter(datetime)
_TYPE_KEYS = ("eventType", "event_type", "event", "type")
_PAYLOAD_KEYS = ("data", "payload", "message")
_EVENT_ID_KEYS = ("eventId", "event_id", "webhookEventId", "deliveryId")


def canonical_type(value: str) -> str:
    """`SmsDelivered`, `sms.delivered`, `SMS_DELIVERED` → `smsdelivered`."""
    return re.sub(r"[^a-z0-9]", "", value.lower())


_CANONICAL = {canonical_type(name): name for name in USED_EVENT_TYPES}
# Status an event type implies when its payload names none (a DeliveryReceipt must say).
_IMPLIED_STATUS = {"SmsSent": "sent", "SmsDelivered": "delivered", "SmsFailed": "failed"}


def parse_webhook_body(body: bytes, content_type: str | None) -> list[WebhookEvent]:
    """Every event in a CastBrick webhook body. Raises ValueError only when the body is not
    readable at all (not JSON, not a form, not objects)."""
    items = _decode(body, content_type)
    return [parse_event(item) for item in items]


def _decode(body: bytes, content_type: str | None) -> list[dict[str, Any]]:
    if content_type and "application/x-www-form-urlencoded" in content_type.lower():
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise ValueError("CastBrick webhook body is not a readable form") from None
        return [dict(pairs)]
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("CastBrick webhook body is not JSON") from None
    if isinstance(decoded, dict):
        # Some senders wrap a batch: {"events": [...]}.
        events = decoded.get("events")
        if isinstance(events, list) and events and all(isinstance(e, dict) for e in events):
            return list(events)
        return [decoded]
    if isinstance(decoded, list) and decoded and all(isinstance(e, dict) for e in decoded):
        return list(decoded)
    raise ValueError("CastBrick webhook body is not a JSON object or a list of objects")


def _first_str(source: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = source.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def _when(source: Mapping[str, Any], *names: str) -> datetime | None:
    for name in names:
        value = source.get(name)
        if value in (None, ""):
            continue
        try:
            parsed = _DATETIME.validate_python(value)
        except ValidationError:
            continue
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None


def _hash(item: Mapping[str, Any]) -> str:
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_event(item: Mapping[str, Any]) -> WebhookEvent:
    """One event object → a WebhookEvent (see the module docstring for the rules)."""
    raw_type = _first_str(item, *_TYPE_KEYS) or ""
    nested = next(
        (item[k] for k in _PAYLOAD_KEYS if isinstance(item.get(k), dict)),
        None,
    )
    data: Mapping[str, Any] = nested if nested is not None else item
    # With the payload nested, a top-level `id` is the event's own; flat, `id` is ambiguous
    # (it may be the message's), so only an explicit event id counts.
    event_id = _first_str(item, *_EVENT_ID_KEYS)
    if event_id is None and nested is not None:
        event_id = _first_str(item, "id")
    event_type = _CANONICAL.get(canonical_type(raw_type), cut(raw_type, 64) if raw_type else "")
    message_id = _first_str(data, "messageId", "message_id", "id", "smsId")
    raw_status = _first_str(data, "status", "deliveryStatus", "state")

    if event_id:
        key = f"castbrick:event:{cut(event_id, _KEY_CHARS)}"
    elif message_id:
        status_part = (raw_status or "").lower()
        key = f"castbrick:msg:{cut(message_id, _KEY_CHARS)}:{event_type}:{cut(status_part, 64)}"
    else:
        key = f"castbrick:sha256:{_hash(item)}"

    if event_type in STATUS_EVENTS:
        status = _status(event_type, data, message_id, raw_status)
        if status is not None:
            return WebhookEvent(key=key, kind="status", event_type=event_type, status=status)
    elif event_type == INBOUND_EVENT:
        inbound = _inbound(data, message_id)
        if inbound is not None:
            return WebhookEvent(key=key, kind="inbound", event_type=event_type, inbound=inbound)
    elif event_type == OPTOUT_EVENT:
        optout = _optout(data)
        if optout is not None:
            return WebhookEvent(key=key, kind="optout", event_type=event_type, optout=optout)
    return WebhookEvent(key=key, kind="ignored", event_type=event_type or "unknown")


def _status(
    event_type: str, data: Mapping[str, Any], message_id: str | None, raw_status: str | None
) -> DeliveryStatus | None:
    if not message_id:
        return None
    implied = _IMPLIED_STATUS.get(event_type)
    # The event type is the more specific statement (an SmsDelivered whose payload still says
    # "Sent" is a delivery); a DeliveryReceipt carries its outcome only in the payload.
    status = implied or raw_status or ""
    return to_delivery_status(
        message_id=cut(message_id, _KEY_CHARS),
        raw_status=status,
        error_message=_first_str(data, "errorMessage", "error", "reason", "description"),
        delivered_at=_when(data, "deliveredAt", "delivered_at"),
        report_time=_when(data, "timestamp", "createdAt", "updatedAt"),
    )


def _inbound(data: Mapping[str, Any], message_id: str | None) -> InboundSms | None:
    sender = _first_str(data, "from", "sender", "phone", "msisdn", "fromNumber", "from_number")
    text = data.get("content", data.get("message", data.get("text", data.get("body"))))
    if not sender or not isinstance(text, str):
        return None
    return InboundSms(
        gateway_message_id=cut(message_id, _KEY_CHARS) if message_id else None,
        from_number=cut(sender, 64),
        to_number=_cut_opt(
            _first_str(data, "to", "recipient", "toNumber", "to_number", "senderId", "shortCode"),
            64,
        ),
        # Message text is the user's: kept whole up to a bound, never reflowed.
        text=text[:_TEXT_CHARS],
        received_at=_when(data, "receivedAt", "received_at", "createdAt", "timestamp", "date"),
    )


def _optout(data: Mapping[str, Any]) -> OptOut | None:
    phone = _first_str(data, "phone", "phoneNumber", "recipientPhone", "from", "msisdn")
    if not phone:
        return None
    opted_in = any(data.get(name) is True for name in ("optedIn", "opted_in", "subscribed"))
    action = _first_str(data, "action", "kind")
    if action and canonical_type(action) in ("optin", "subscribe", "resubscribe"):
        opted_in = True
    return OptOut(
        phone=cut(phone, 64),
        at=_when(data, "optedOutAt", "createdAt", "timestamp", "date"),
        opted_in=opted_in,
    )


def _cut_opt(value: str | None, limit: int) -> str | None:
    return cut(value, limit) if value else None
