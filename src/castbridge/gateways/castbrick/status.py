"""CastBrick's message statuses → our DeliveryStatus (gateways.md §2 status table), one mapping
for polled list items and pushed reports alike."""

from __future__ import annotations

import re
from datetime import datetime

from castbridge.gateways.base import DeliveryState, DeliveryStatus
from castbridge.gateways.castbrick.errors import OPTED_OUT, cut
from castbridge.logging import get_logger

log = get_logger("castbridge.gateways.castbrick")

# Compared case-insensitively: the official mock answers "Queued", "Delivered".
PENDING_STATUSES = frozenset({"pending", "queued", "scheduled", "sent"})
# How a failure caused by an opt-out would read. CastBrick documents no such status or code
# (uncertain); only a clear sentence counts, since an opt-out sets the contact's DND.
_OPTED_OUT = re.compile(r"opt(?:ed)?[\s_-]?out|unsubscribed", re.IGNORECASE)


def to_delivery_status(
    *,
    message_id: str,
    raw_status: str,
    error_message: str | None = None,
    delivered_at: datetime | None = None,
    report_time: datetime | None = None,
) -> DeliveryStatus:
    """pending, queued, scheduled, sent → pending (never "sent": acceptance is not delivery);
    delivered → delivered; failed → failed with `errorMessage`. Any other value is logged and
    kept non-terminal, the safe reading (a late receipt can still settle it)."""
    normalised = raw_status.strip().lower()
    state: DeliveryState
    code: str | None = None
    opted_out = False
    message = cut(error_message) if error_message else None
    if normalised in PENDING_STATUSES:
        state, terminal = "pending", False
    elif normalised == "delivered":
        state, terminal = "delivered", True
        delivered_at = delivered_at or report_time
    elif normalised == "failed":
        state, terminal = "failed", True
        if message and _OPTED_OUT.search(message):
            opted_out, code = True, OPTED_OUT
        else:
            code = "FAILED"
        message = message or "CastBrick could not deliver the message"
    else:
        log.warning(
            "castbrick.status.unrecognised", raw_status=cut(raw_status, 64), message_id=message_id
        )
        state, terminal = "pending", False
    return DeliveryStatus(
        gateway_message_id=message_id,
        state=state,
        raw_status=cut(raw_status, 64),
        terminal=terminal,
        error_code=code,
        error_message=message if state == "failed" else None,
        delivered_at=delivered_at if state == "delivered" else None,
        opted_out=opted_out,
    )
