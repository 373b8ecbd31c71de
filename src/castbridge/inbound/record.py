"""Opt-outs learned while sending: a gateway that refuses a recipient, or reports a message
failed, because the number opted out (gateways.md §6: not a delivery failure, never retried,
recorded so castbridge refuses the next one itself)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge import metrics
from castbridge.inbound.optouts import record
from castbridge.secrets import SealedPhone
from castbridge.store.jobs import Transition
from castbridge.store.models import Message
from castbridge.store.optouts import OptOutChange


def _change(message: Message, gateway_label: str) -> OptOutChange | None:
    if not message.e164 or not message.phone_hash:
        return None
    return OptOutChange(
        location_id=message.location_id,
        phone=SealedPhone(
            enc=message.phone_enc,
            hash=message.phone_hash,
            masked=message.phone_masked,
            e164=True,
        ),
        opted_out=True,
        source="gateway",
        detail=gateway_label,
        at=datetime.now(UTC),
    )


def with_gateway_optout(transition: Transition, message: Message, gateway_label: str) -> Transition:
    """`transition`, also recording the opt-out in its own fenced transaction."""
    change = _change(message, gateway_label)
    if change is None:
        return transition
    earlier = transition.also

    async def write(session: AsyncSession) -> None:
        if earlier is not None:
            await earlier(session)
        if await record(session, change) is not None:
            metrics.OPTOUT_CHANGES.labels("gateway", "out").inc()

    return dataclasses.replace(transition, also=write)
