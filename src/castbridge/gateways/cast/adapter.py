"""CastGateway: Cast.ph behind the provider-neutral `Gateway` interface, and its registry entry."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, cast

from pydantic import ValidationError

from castbridge.gateways.base import (
    AccountCheck,
    Balance,
    Capabilities,
    DeliveryState,
    DeliveryStatus,
    InboundPage,
    OptOut,
    Reconciliation,
    RegisteredWebhook,
    SenderId,
    SendRequest,
    SendResult,
    UnsupportedError,
    WebhookEvent,
)
from castbridge.gateways.cast.client import CastClient, CastPacing
from castbridge.gateways.cast.errors import GATEWAY, CastBadResponseError, CastValidationError
from castbridge.gateways.cast.models import SendChannel, StatusResponse, UnsubscribedEntry
from castbridge.gateways.cast.retry import RetryPolicy
from castbridge.gateways.cast.settings import (
    DEFAULT_MAX_CHARS,
    CastAccountSettings,
    CastDefaults,
    check_key,
)
from castbridge.gateways.spec import AccountConfig, GatewayContext, GatewaySpec
from castbridge.logging import get_logger
from castbridge.sms.phone import InvalidNumber, format_for_gateway
from castbridge.sms.text import utf16_length

log = get_logger("castbridge.gateways.cast")

CAST_CAPABILITIES = Capabilities(
    name=GATEWAY,
    label="Cast.ph",
    country="PH",
    number_style="national",
    idempotency_keys=True,
    status_poll=True,
    delivery_reports=True,
    dlr_push=False,
    inbound_push=False,
    inbound_poll=False,
    reconcile=True,
    channels=("sms", "otp", "sim"),
    two_way="no",
    webhook_setup="none",
    sender_ids_api=True,
    optout_list=True,
)

SANDBOX_ID_PREFIX = "SANDBOX_"
# How far around the ambiguous attempt `find_sent` looks in Cast's logs: Cast stamps its own
# `created_at`, and our clock and Cast's may differ a little.
RECONCILE_MARGIN = timedelta(minutes=5)
LOGS_PAGE = 500


def to_delivery_status(response: StatusResponse) -> DeliveryStatus:
    """Map Cast's status to ours (gateways.md §1.7). Never "sent": acceptance is not delivery.

    sent, pending -> pending (waiting for a receipt); delivered -> delivered; undelivered ->
    failed with `dlr_status` (UNDELIV, REJECTD, EXPIRED); failed -> failed with Cast's
    `error_message`. Any other value (ENROUTE, UNKNOWN, ... are possible but undocumented,
    **uncertain**) is logged and kept non-terminal, the safe reading.
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
        error_code=response.dlr_status or (raw.upper() if state == "failed" else None),
        error_message=error_message,
        delivered_at=response.delivered_at,
    )


class CastGateway:
    """One Cast account as a `castbridge.gateways.base.Gateway`.

    `sender_id` is sent with every message unless the request names its own; Cast's "default
    sender" rules differ between its documentation revisions, so we always send one when known.
    The message reference is the `X-Idempotency-Key`: a retry of the same message is answered
    from Cast's cache for 24 h instead of being sent and billed again.
    """

    capabilities = CAST_CAPABILITIES

    def __init__(
        self,
        client: CastClient,
        *,
        sender_id: str | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
        allow_international: bool = False,
    ) -> None:
        if max_chars < 1:
            raise ValueError("max_chars must be positive")
        self.client = client
        self.sender_id = sender_id
        self._max_chars = max_chars
        self._allow_international = allow_international

    def max_chars(self) -> int:
        return self._max_chars

    def format_number(self, e164: str) -> str:
        """`+639171234567` -> `09171234567`, accepted by both Cast revisions; raises
        `InvalidNumber` (a ValueError) for a number outside the Philippines, unless the
        account allows international sends (then E.164, which Rev B accepts)."""
        try:
            return format_for_gateway(e164, "PH", "national")
        except InvalidNumber:
            if self._allow_international and e164.startswith("+"):
                return e164
            raise

    def validate(self, to_e164: str, text: str, channel: str) -> None:
        if channel not in self.capabilities.channels:
            raise CastValidationError(
                f"Cast.ph has no {channel!r} channel (use sms, otp or sim).",
                code="UNSUPPORTED_CHANNEL",
            )
        try:
            self.format_number(to_e164)
        except InvalidNumber as exc:
            raise CastValidationError(
                f"Cannot send SMS: {exc.reason}", code="INVALID_NUMBER"
            ) from None
        if not text.strip():
            raise CastValidationError("Cannot send an empty SMS.", code="EMPTY_MESSAGE")
        length = utf16_length(text)
        if length > self._max_chars:
            raise CastValidationError(
                f"Message is too long for Cast.ph: {length} characters, at most "
                f"{self._max_chars} allowed. Shorten it and send again.",
                code="MESSAGE_TOO_LONG",
            )

    async def send(self, request: SendRequest) -> SendResult:
        """Send one message; its reference as idempotency key makes retries free of double sends."""
        self.validate(request.to_e164, request.text, request.channel)
        to = self.format_number(request.to_e164)
        response = await self.client.send(
            to,
            request.text,
            idempotency_key=request.reference,
            channel=cast(SendChannel, request.channel),
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

    async def status(
        self,
        gateway_message_id: str,
        channel: str = "sms",
        *,
        to_e164: str | None = None,
        sent_at: datetime | None = None,
    ) -> DeliveryStatus:
        """Poll `/sms/status/{id}` (`/sim/status/{id}` for SIM messages; OTP uses sms)."""
        status_channel: Literal["sms", "sim"] = "sim" if channel == "sim" else "sms"
        response = await self.client.status(gateway_message_id, status_channel)
        return to_delivery_status(response)

    async def find_sent(
        self, request: SendRequest, *, since: datetime, until: datetime
    ) -> Reconciliation:
        """Look the send up in `/sms/logs` by destination, text and time (gateways.md §1.5: a
        replayed 5xx or unreadable answer leaves the outcome unknown)."""
        to = self.format_number(request.to_e164)
        start, end = since - RECONCILE_MARGIN, until + RECONCILE_MARGIN
        page = await self.client.logs(
            search=to, start=start.date(), end=end.date(), limit=LOGS_PAGE
        )
        for entry in page.logs:
            when = entry.created_at
            if entry.destination != to or entry.message != request.text:
                continue
            if when is not None and not start <= when <= end:
                continue
            if entry.smpp_message_id:
                return Reconciliation(
                    SendResult(gateway_message_id=entry.smpp_message_id, parts=entry.parts),
                    conclusive=True,
                )
        # The filtered logs fit one page, so nothing was left unseen.
        return Reconciliation(None, conclusive=len(page.logs) < LOGS_PAGE)

    async def verify_credentials(self) -> AccountCheck:
        profile = await self.client.profile()
        balance = await self.balance()
        return AccountCheck(account_name=profile.name, balance=balance)

    async def balance(self) -> Balance:
        response = await self.client.balance()
        # Credits are SMS parts, not pesos (gateways.md §1.8).
        return Balance(amount=float(response.credits), currency="credits", unit="credits")

    async def sender_ids(self) -> list[SenderId]:
        response = await self.client.sender_ids()
        return [
            SenderId(sender_id=entry.sender_id, label=entry.label, channel=entry.channel)
            for entry in response.sender_ids
        ]

    def parse_webhook(self, body: bytes, content_type: str | None) -> list[WebhookEvent]:
        raise UnsupportedError("Cast.ph sends no webhooks", code="UNSUPPORTED", gateway=GATEWAY)

    async def register_webhooks(self, url: str) -> list[RegisteredWebhook]:
        return []

    async def poll_inbound(self, cursor: str | None, *, max_pages: int) -> InboundPage:
        raise UnsupportedError("Cast.ph has no inbound SMS", code="UNSUPPORTED", gateway=GATEWAY)

    async def list_optouts(self, *, max_pages: int) -> list[OptOut]:
        """Cast's unsubscribe list. Cast blocks a number per sender ID, so only entries for
        this account's sender count; an entry without a sender ID counts too (safe side)."""
        response = await self.client.unsubscribed()
        found: list[OptOut] = []
        for row in response.data:
            try:
                entry = UnsubscribedEntry.model_validate(row)
            except ValidationError:
                continue
            if entry.sender_id and self.sender_id and entry.sender_id != self.sender_id:
                continue
            found.append(OptOut(phone=entry.phone, at=entry.unsubscribed_at))
        return found


def build(account: AccountConfig, context: GatewayContext) -> CastGateway:
    defaults = cast(CastDefaults, context.defaults)
    settings = cast(CastAccountSettings, account.settings)
    limits = defaults.rate_limits()
    client = CastClient(
        context.http,
        api_key=account.api_key,
        base_url=account.api_url,
        pacing=CastPacing(
            pacer=context.pacer,
            account_bucket=context.account_bucket,
            send_limit=limits["account"],
            ip_bucket=context.ip_bucket,
            ip_limit=limits["ip"],
        ),
        retry=RetryPolicy(attempts=context.attempts),
        timeout=defaults.timeout_seconds,
    )
    return CastGateway(
        client,
        sender_id=account.sender_id,
        max_chars=settings.max_chars,
        allow_international=settings.allow_international,
    )


SPEC = GatewaySpec(
    capabilities=CAST_CAPABILITIES,
    defaults=CastDefaults,
    account_settings=CastAccountSettings,
    build=build,
    check_key=check_key,
    default_channel="sms",
    settings_from_defaults=lambda defaults: {"max_chars": cast(CastDefaults, defaults).max_chars},
)
