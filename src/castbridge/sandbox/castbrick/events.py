"""The webhook bodies the CastBrick sandbox posts: our best guess, as the real ones are unknown.

CastBrick documents its event types but no body and no signature (gateways.md §2). The sandbox
posts these shapes, one JSON object per request, `Content-Type: application/json`, no
signature header, retried on a non-2xx answer (`webhook_attempts`, `webhook_retry_delay`).
castbridge's parser (`castbridge.gateways.castbrick.webhooks`) reads them and the variants
below; keep the two in step.

Envelope (default, `webhook_envelope=True`), the type under `webhook_type_key`
(`eventType` by default, or `event`, or `type`):

    {"id": "evt_<32 hex>", "eventType": "SmsDelivered", "timestamp": "2026-05-07T10:23:08Z",
     "data": {...}}

Flat (`webhook_envelope=False`): the event id moves to `eventId`, the payload's fields sit at
the top level next to `eventType` and `timestamp` (so a top-level `id` is the message's).

Payloads (`data`), statuses cased per `status_case` ("Delivered" or "delivered"):

- `SmsSent`, `SmsDelivered`, `SmsFailed`, `DeliveryReceipt` (the last posted together with
  `SmsDelivered`/`SmsFailed`, carrying the same final status):

      {"messageId": "<batch uuid>", "id": "<item uuid>", "recipientPhone": "+244923000000",
       "phone": "+244923000000", "senderId": "CASTBRIDGE", "status": "Delivered",
       "errorMessage": null, "sentAt": "…Z", "deliveredAt": "…Z" | null}

- `InboundMessage` (from `POST /_sandbox/inbound`):

      {"id": "<uuid>", "from": "+244923000000", "to": "+244923999999",
       "content": "STOP", "message": "STOP", "receivedAt": "…Z"}

- `OptOut` (from `POST /_sandbox/optout`; `optedIn: true` for a re-subscription):

      {"phone": "+244923000000", "keyword": "STOP", "optedIn": false, "optedOutAt": "…Z"}

- `LowBalance` (when a send takes the balance below `lowBalanceThreshold`):

      {"balance": 450.0, "lowBalanceThreshold": 500.0, "currency": "AOA"}
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from castbridge.sandbox.castbrick.config import CastBrickSandboxConfig, StatusCase

STATUS_EVENTS = ("SmsSent", "SmsDelivered", "SmsFailed", "DeliveryReceipt")
# Every type `POST /webhooks` accepts (gateways.md §2).
KNOWN_EVENT_TYPES = (
    *STATUS_EVENTS,
    "InboundMessage",
    "OptOut",
    "LowBalance",
    "ContactCreated",
    "ContactUpdated",
    "ContactDeleted",
    "CampaignCreated",
    "CampaignUpdated",
    "CampaignDeleted",
)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def cased(status: str, style: StatusCase) -> str:
    return status.capitalize() if style == "capitalized" else status.lower()


def event_body(
    config: CastBrickSandboxConfig,
    *,
    event_id: str,
    event_type: str,
    at: float,
    data: dict[str, Any],
) -> dict[str, Any]:
    """One event in the configured shape (see the module docstring)."""
    type_key = config.webhook_type_key
    if config.webhook_envelope:
        return {"id": event_id, type_key: event_type, "timestamp": iso(at), "data": data}
    return {"eventId": event_id, type_key: event_type, "timestamp": iso(at), **data}
