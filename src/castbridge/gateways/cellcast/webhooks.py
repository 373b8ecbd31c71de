"""Cellcast's pushed webhooks (the dashboard's Status URL and Receive URL) as WebhookEvents.

Shapes (gateways.md §3):

- Status URL: `{_id, status, type: "send", sender, receiver}` → a status event;
- Receive URL, documented: `{_id, status, type: "receive", message, sender, receiver}`;
  seen live: `{sender, reply, message, receiver}` where `reply` is the customer's text and
  `message` the original outbound text → an inbound event.

A body is one such object or an array of them (the legacy API batched its callbacks). Cellcast
signs nothing: the route authenticates by the unguessable account token in the URL, and the
core may confirm a status `_id` by polling before acting (gateways.md §3, uncertain items).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from castbridge.gateways.base import InboundSms, WebhookEvent
from castbridge.gateways.cellcast.models import lenient_datetime
from castbridge.gateways.cellcast.statuses import to_delivery_status

MAX_EVENTS = 1000
MAX_ID_CHARS = 64
MAX_TEXT_CHARS = 10_000
MAX_NUMBER_CHARS = 32
MAX_TYPE_CHARS = 40


def _str(value: Any, limit: int) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(int(value)) if float(value).is_integer() else str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:limit] if value else None


def _digest(item: Any) -> str:
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _load(body: bytes, content_type: str | None) -> Any:
    if content_type and "x-www-form-urlencoded" in content_type.lower():
        try:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise ValueError("Cellcast webhook body is not UTF-8") from None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("Cellcast webhook body is not JSON") from None


def parse_webhook(body: bytes, content_type: str | None) -> list[WebhookEvent]:
    """Events in a Status URL or Receive URL body (pure).

    Raises ValueError only when the body is unreadable (not JSON, not an object or array of
    objects). Anything else unknown comes back as `ignored`, keyed by a hash of its content.
    """
    payload = _load(body, content_type)
    if isinstance(payload, Mapping):
        items: list[Any] = [payload]
    elif isinstance(payload, list):
        items = payload[:MAX_EVENTS]
    else:
        raise ValueError("Cellcast webhook body is neither an object nor an array")
    return [_event(item) for item in items]


def _event(item: Any) -> WebhookEvent:
    if not isinstance(item, Mapping):
        return WebhookEvent(key=f"ignored:{_digest(item)}", kind="ignored", event_type="unknown")
    kind = (_str(item.get("type"), MAX_TYPE_CHARS) or "").lower()
    message_id = _str(item.get("_id"), MAX_ID_CHARS)
    status = _str(item.get("status"), MAX_TYPE_CHARS)
    sender = _str(item.get("sender"), MAX_NUMBER_CHARS)
    if kind == "send":
        if message_id and status:
            return _status_event(item, message_id, status)
    elif kind == "receive":
        if sender:
            return _inbound_event(item, message_id)
    elif not kind:
        # The live Receive body has no `type`; tell it from a report by its text fields.
        if sender and ("reply" in item or _str(item.get("message"), MAX_TEXT_CHARS)):
            return _inbound_event(item, message_id)
        if message_id and status:
            return _status_event(item, message_id, status)
    return WebhookEvent(
        key=f"ignored:{_digest(item)}", kind="ignored", event_type=kind or "unknown"
    )


def _status_event(item: Mapping[str, Any], message_id: str, status: str) -> WebhookEvent:
    # One message gets several reports over its life, so the key includes the status: a
    # redelivered "delivered" is a duplicate, a "delivered" after a "sent" is not.
    delivery = to_delivery_status(
        message_id, status, updated_at=lenient_datetime(item.get("updatedAt"))
    )
    return WebhookEvent(
        key=f"status:{message_id}:{delivery.raw_status.lower()}",
        kind="status",
        event_type="send",
        status=delivery,
    )


def _inbound_event(item: Mapping[str, Any], message_id: str | None) -> WebhookEvent:
    # Receive URL text field (**uncertain**): the docs say `message`; one live integration
    # gets `reply` (the customer's words) next to `message` (our original outbound text). Safe
    # behaviour: `reply` when present and non-empty, else `message`; the raw body is stored by
    # the route. A STOP-like reply is still just an inbound: castbridge decides opt-outs.
    reply = item.get("reply")
    text = reply if isinstance(reply, str) and reply.strip() else item.get("message")
    text = text[:MAX_TEXT_CHARS] if isinstance(text, str) else ""
    sender = _str(item.get("sender"), MAX_NUMBER_CHARS) or ""
    inbound = InboundSms(
        gateway_message_id=message_id,
        from_number=sender,
        to_number=_str(item.get("receiver"), MAX_NUMBER_CHARS),
        text=text,
        received_at=lenient_datetime(
            item.get("received_at") or item.get("createdAt") or item.get("receivedAt")
        ),
    )
    # Whether a Receive URL `_id` is the reply's own id or the outbound message's is
    # **uncertain**; two replies to one message could then share an `_id`. So the key joins
    # the `_id` with a hash of sender and text: a redelivery of the same body is still one key,
    # two different replies are two.
    content = hashlib.sha256(f"{sender}\x00{text}".encode()).hexdigest()[:16]
    key = f"inbound:{message_id}:{content}" if message_id else f"inbound:{_digest(dict(item))}"
    return WebhookEvent(key=key, kind="inbound", event_type="receive", inbound=inbound)
