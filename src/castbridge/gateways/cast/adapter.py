"""CastGateway: Cast.ph behind the provider-neutral `Gateway` interface."""

from __future__ import annotations

from typing import Literal, cast

from castbridge.gateways.base import (
    Balance,
    Capabilities,
    DeliveryState,
    DeliveryStatus,
    SenderId,
    SendRequest,
    SendResult,
    UnsupportedError,
)
from castbridge.gateways.cast.client import CastClient
from castbridge.gateways.cast.errors import GATEWAY, CastBadResponseError, CastValidationError
from castbridge.gateways.cast.models import SendChannel, StatusResponse
from castbridge.logging import get_logger
from castbridge.sms.phone import InvalidNumber, format_for_gateway
from castbridge.sms.text import MessageTooLong, check_length

log = get_logger("castbridge.gateways.cast")

CAST_CAPABILITIES = Capabilities(
    name=GATEWAY,
    country="PH",
    number_style="national",
    idempotency_keys=True,
    status_poll=True,
    dlr_push=False,
    inbound_push=False,
    inbound_poll=False,
    channels=("sms", "otp", "sim"),
)

# Rev A's hard limit; raise per account once it is confirmed on Rev B (gateways.md §1.10).
DEFAULT_MAX_CHARS = 450

SANDBOX_ID_PREFIX = "SANDBOX_"


def to_delivery_status(response: StatusResponse) -> DeliveryStatus:
    """Map Cast's status to ours (gateways.md §1.7). Never "sent": acceptance is not delivery.

    sent, pending -> pending (waiting for a receipt); delivered -> delivered; undelivered ->
    failed with `dlr_status` (UNDELIV, REJECTD, EXPIRED); failed -> failed with Cast's
    `error_message`. Any other value is logged and kept non-terminal.
    """
    raw = response.status
    state: DeliveryState
    error_message = response.error_message
    match raw.strip().lower():
        case "sent" | "pending":
            state, terminal = "pending", False
        case "delivered":
            state, terminal = "delivered", True
        case "undelivered":
            state, terminal = "failed", True
        case "failed":
            state, terminal = "failed", True
            error_message = error_message or "Cast could not submit the message to the carrier"
        case _:
            log.warning(
                "cast.status.unrecognised",
                raw_status=raw,
                dlr_status=response.dlr_status,
                message_id=response.message_id,
            )
            state, terminal = "pending", False
    return DeliveryStatus(
        gateway_message_id=response.message_id,
        state=state,
        raw_status=raw,
        terminal=terminal,
        dlr_status=response.dlr_status,
        error_message=error_message,
        delivered_at=response.delivered_at,
    )


class CastGateway:
    """One Cast account as a `castbridge.gateways.base.Gateway`.

    `sender_id` is sent with every message unless the request names its own; Cast's "default
    sender" rules differ between its documentation revisions, so we always send one when known.
    """

    capabilities = CAST_CAPABILITIES

    def __init__(
        self,
        client: CastClient,
        *,
        sender_id: str | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        if max_chars < 1:
            raise ValueError("max_chars must be positive")
        self.client = client
        self.sender_id = sender_id
        self._max_chars = max_chars

    def format_number(self, e164: str) -> str:
        """`+639171234567` -> `09171234567`, accepted by both Cast revisions; raises
        `InvalidNumber` (a ValueError) for a number outside the Philippines."""
        return format_for_gateway(e164, "PH", "national")

    def max_chars(self) -> int:
        return self._max_chars

    async def send(self, request: SendRequest) -> SendResult:
        """Send one message; its `idempotency_key` makes retries of it free of double sends."""
        channel = request.channel
        if channel not in self.capabilities.channels:
            raise UnsupportedError(
                f"Cast has no {channel!r} channel here (use sms, otp or sim)",
                code="UNSUPPORTED_CHANNEL",
                gateway=GATEWAY,
            )
        try:
            to = self.format_number(request.to_e164)
        except InvalidNumber as exc:
            raise CastValidationError(exc.reason, code="INVALID_NUMBER") from None
        if not request.text:
            raise CastValidationError("the message is empty", code="EMPTY_MESSAGE")
        try:
            check_length(request.text, self._max_chars)
        except MessageTooLong as exc:
            raise CastValidationError(str(exc), code="MESSAGE_TOO_LONG") from None
        response = await self.client.send(
            to,
            request.text,
            idempotency_key=request.idempotency_key,
            channel=cast(SendChannel, channel),
            sender_id=request.sender_id or self.sender_id,
        )
        if not response.message_id:
            raise CastBadResponseError(
                "Cast accepted the message without a message_id",
                code="INVALID_RESPONSE",
                outcome_unknown=True,
            )
        return SendResult(
            gateway_message_id=response.message_id,
            parts=response.parts,
            replayed=response.replayed,
            sandbox=response.sandbox or response.message_id.startswith(SANDBOX_ID_PREFIX),
        )

    async def status(self, gateway_message_id: str, channel: str = "sms") -> DeliveryStatus:
        """Poll `/sms/status/{id}` (`/sim/status/{id}` for SIM messages; OTP uses sms)."""
        status_channel: Literal["sms", "sim"] = "sim" if channel == "sim" else "sms"
        response = await self.client.status(gateway_message_id, status_channel)
        return to_delivery_status(response)

    async def balance(self) -> Balance:
        response = await self.client.balance()
        return Balance(credits=float(response.credits), currency=response.currency)

    async def sender_ids(self) -> list[SenderId]:
        response = await self.client.sender_ids()
        return [
            SenderId(sender_id=entry.sender_id, label=entry.label, channel=entry.channel)
            for entry in response.sender_ids
        ]
