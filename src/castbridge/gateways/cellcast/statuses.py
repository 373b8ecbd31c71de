"""Cellcast's message statuses mapped to ours (gateways.md §3), for polls and pushed reports."""

from __future__ import annotations

from datetime import datetime

from castbridge.gateways.base import DeliveryState, DeliveryStatus
from castbridge.logging import get_logger

log = get_logger("castbridge.gateways.cellcast")

MAX_RAW_STATUS_CHARS = 40

PENDING = frozenset({"queued", "sent", "scheduled"})
# "delievered" (sic) is how Cellcast spells the list's status filter; should a row ever carry
# that spelling it is still Cellcast's delivery receipt.
DELIVERED = frozenset({"delivered", "delievered"})
FAILED = frozenset({"failed", "rejected", "expired", "dead", "blocked", "canceled", "cancelled"})

# A sentence per failure, shown in HighLevel next to the code.
_FAILURE_SENTENCES = {
    "failed": "Cellcast could not deliver the message.",
    "rejected": "The message was rejected by the carrier or Cellcast.",
    "expired": "The message expired before it could be delivered (handset off or out of reach).",
    "dead": "The message could not be delivered: the number appears to be inactive.",
    "blocked": "The message was blocked by the carrier or by Cellcast's compliance checks.",
    "canceled": "The message was cancelled before it was sent.",
    "cancelled": "The message was cancelled before it was sent.",
}


def to_delivery_status(
    message_id: str, raw_status: str, *, updated_at: datetime | None = None
) -> DeliveryStatus:
    """queued/sent/scheduled → pending; delivered → delivered (at `updated_at`, which is the
    delivery time only for that status); failed/rejected/expired/dead/blocked/canceled →
    failed, code = the status in capitals. Any other value (`received` on a sent message,
    something new) is logged and kept non-terminal, the safe reading."""
    raw = raw_status.strip()[:MAX_RAW_STATUS_CHARS]
    value = raw.lower()
    state: DeliveryState
    error_code: str | None = None
    error_message: str | None = None
    delivered_at: datetime | None = None
    if value in PENDING:
        state, terminal = "pending", False
    elif value in DELIVERED:
        state, terminal = "delivered", True
        delivered_at = updated_at
    elif value in FAILED:
        state, terminal = "failed", True
        error_code = ("canceled" if value == "cancelled" else value).upper()
        error_message = _FAILURE_SENTENCES[value]
    else:
        log.warning("cellcast.status.unrecognised", raw_status=raw, message_id=message_id)
        state, terminal = "pending", False
    return DeliveryStatus(
        gateway_message_id=message_id,
        state=state,
        raw_status=raw,
        terminal=terminal,
        error_code=error_code,
        error_message=error_message,
        delivered_at=delivered_at,
    )
