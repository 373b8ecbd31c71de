"""UgsmsGateway: UGSMS behind the provider-neutral `Gateway` interface, and its registry entry."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import cast

from castbridge.gateways.base import (
    AccountCheck,
    Balance,
    Capabilities,
    DeliveryStatus,
    GatewayError,
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
from castbridge.gateways.spec import AccountConfig, GatewayContext, GatewaySpec
from castbridge.gateways.ugsms.client import UgsmsClient, UgsmsPacing
from castbridge.gateways.ugsms.errors import (
    GATEWAY,
    UgsmsBadResponseError,
    UgsmsRefusedError,
    UgsmsValidationError,
)
from castbridge.gateways.ugsms.retry import RetryPolicy
from castbridge.gateways.ugsms.settings import (
    DEFAULT_MAX_PARTS,
    MAX_SENDER_ID_CHARS,
    UgsmsAccountSettings,
    UgsmsDefaults,
    check_key,
)
from castbridge.sms.phone import InvalidNumber, format_for_gateway, normalize
from castbridge.sms.text import segments

# No delivery status, no DLR, no inbound, no list of sent messages (gateways.md §4, §5).
UGSMS_CAPABILITIES = Capabilities(
    name=GATEWAY,
    label="UGSMS",
    country="UG",
    number_style="national",
    idempotency_keys=False,
    status_poll=False,
    # An accepted UGSMS message is never "delivered": no carrier confirms anything to us.
    delivery_reports=False,
    dlr_push=False,
    inbound_push=False,
    inbound_poll=False,
    # Nothing to look a send up in: an ambiguous send stays unknown, never resent automatically.
    reconcile=False,
    channels=("sms",),
    two_way="no",
    webhook_setup="none",
    sender_ids_api=False,
)


def _unsupported(what: str) -> UnsupportedError:
    return UnsupportedError(what, code="UNSUPPORTED", gateway=GATEWAY)


def batch_reference(requests: Sequence[SendRequest]) -> str:
    """The bulk `reference` for a batch: the same batch always gets the same short token."""
    digest = hashlib.sha256("\n".join(r.reference for r in requests).encode()).hexdigest()
    return "cb" + digest[:30]


class UgsmsGateway:
    """One UGSMS account as a `castbridge.gateways.base.Gateway`.

    Numbers go out as Ugandan national `0XXXXXXXXX` from E.164: `07…` local numbers are also
    Kenyan ones, so only the E.164 country decides, and anything not Ugandan is refused
    (sms-text.md §5.3). `sender_id` is sent with every message unless the request names its own.
    """

    capabilities = UGSMS_CAPABILITIES

    def __init__(
        self,
        client: UgsmsClient,
        *,
        sender_id: str | None = None,
        max_parts: int = DEFAULT_MAX_PARTS,
        bulk: bool = False,
    ) -> None:
        if max_parts < 1:
            raise ValueError("max_parts must be positive")
        self.client = client
        self.sender_id = sender_id
        self._max_parts = max_parts
        self._bulk = bulk

    def max_parts(self) -> int:
        return self._max_parts

    def format_number(self, e164: str) -> str:
        """`+256702913454` -> `0702913454`; raises `InvalidNumber` for any other country."""
        return format_for_gateway(e164, "UG", "national")

    def validate(self, to_e164: str, text: str, channel: str) -> None:
        if channel not in self.capabilities.channels:
            raise UgsmsValidationError(
                f"UGSMS has no {channel!r} channel; it sends SMS only.",
                code="UNSUPPORTED_CHANNEL",
            )
        try:
            # format_number() wants E.164 from Uganda; normalize() then refuses an invalid
            # number or a landline.
            self.format_number(to_e164)
            normalize(to_e164, "UG")
        except InvalidNumber as exc:
            raise UgsmsValidationError(
                f"Cannot send SMS: {exc.reason}", code="INVALID_NUMBER"
            ) from None
        if not text.strip():
            raise UgsmsValidationError("Cannot send an empty SMS.", code="EMPTY_MESSAGE")
        # Our count (GSM-7 153 / UCS-2 67 per part of a multipart text) is never lower than a
        # naive "160 characters per segment", so a text we pass is not over UGSMS's limit.
        parts = segments(text).count
        if parts > self._max_parts:
            raise UgsmsValidationError(
                f"Message is too long for UGSMS: it needs {parts} SMS parts, at most "
                f"{self._max_parts} allowed. Shorten it and send again.",
                code="MESSAGE_TOO_LONG",
            )

    def _sender(self, request: SendRequest) -> str | None:
        sender = request.sender_id or self.sender_id
        if sender and len(sender) > MAX_SENDER_ID_CHARS:
            raise UgsmsValidationError(
                f"The sender ID {sender[:20]!r} is too long for UGSMS: at most "
                f"{MAX_SENDER_ID_CHARS} characters.",
                code="INVALID_SENDER_ID",
            )
        return sender or None

    async def send(self, request: SendRequest) -> SendResult:
        """Send one message, once. UGSMS has no idempotency key: an ambiguous outcome raises
        with `outcome_unknown=True` and must never be resent automatically (nothing can tell
        whether it was sent). `request.reference` is not sent: the send endpoint has no field
        for it."""
        self.validate(request.to_e164, request.text, request.channel)
        sender = self._sender(request)
        response = await self.client.send(
            self.format_number(request.to_e164), request.text, sender_id=sender
        )
        # `success == true` is UGSMS's explicit acceptance; v2's body is undocumented and may
        # carry no `data.message_id` (uncertain). The id is never polled (there is no status
        # API), so an acceptance without one is still a known acceptance, not an unknown outcome.
        return SendResult(gateway_message_id=response.message_id)

    async def send_batch(self, requests: Sequence[SendRequest]) -> list[SendResult | GatewayError]:
        """Several messages in one `/sms/send/bulk` request, each result mapped back by index.

        Only with the account's `bulk` setting on (the endpoint is unverified); the core does
        not call this: it sends one message per request. An ambiguous answer raises, and then
        EVERY message of the batch is unknown; an index UGSMS's answer does not mention comes
        back as an unknown-outcome error.
        """
        if not self._bulk:
            raise _unsupported("UGSMS bulk sending is off for this account")
        if not requests:
            return []
        for request in requests:
            self.validate(request.to_e164, request.text, request.channel)
        senders = {self._sender(request) for request in requests}
        if len(senders) != 1:
            raise UgsmsValidationError(
                "A UGSMS bulk request has one sender ID for all its messages.",
                code="INVALID_SENDER_ID",
            )
        response = await self.client.send_bulk(
            [(self.format_number(r.to_e164), r.text) for r in requests],
            sender_id=senders.pop(),
            reference=batch_reference(requests),
        )
        results: list[SendResult | GatewayError] = []
        for outcome in response.outcomes:
            if outcome.accepted:
                results.append(SendResult(gateway_message_id=None, parts=outcome.parts))
            elif outcome.accepted is False:
                results.append(
                    UgsmsRefusedError(outcome.error or "UGSMS refused this message", code="REFUSED")
                )
            else:
                results.append(
                    UgsmsBadResponseError(
                        "UGSMS's bulk answer does not mention this message",
                        code="INVALID_RESPONSE",
                        outcome_unknown=True,
                    )
                )
        return results

    async def status(
        self,
        gateway_message_id: str,
        channel: str = "sms",
        *,
        to_e164: str | None = None,
        sent_at: datetime | None = None,
    ) -> DeliveryStatus:
        raise _unsupported("UGSMS gives no delivery status")

    async def find_sent(
        self, request: SendRequest, *, since: datetime, until: datetime
    ) -> Reconciliation:
        """UGSMS has no status or sent-message list (gateways.md §4): nothing can be looked up,
        so this refuses rather than answer "not found", which would invite a double send."""
        raise _unsupported("UGSMS keeps no list of sent messages to reconcile with")

    async def verify_credentials(self) -> AccountCheck:
        return AccountCheck(balance=await self.balance())

    async def balance(self) -> Balance:
        response = await self.client.balance()
        return Balance(amount=response.balance, currency=response.currency, unit="money")

    async def sender_ids(self) -> list[SenderId]:
        raise _unsupported("UGSMS has no API listing sender IDs")

    def parse_webhook(self, body: bytes, content_type: str | None) -> list[WebhookEvent]:
        raise _unsupported("UGSMS sends no webhooks")

    async def register_webhooks(self, url: str) -> list[RegisteredWebhook]:
        return []

    async def poll_inbound(self, cursor: str | None, *, max_pages: int) -> InboundPage:
        raise _unsupported("UGSMS has no inbound SMS")

    async def list_optouts(self, *, max_pages: int) -> list[OptOut]:
        raise _unsupported("UGSMS has no opt-out list")


def build(account: AccountConfig, context: GatewayContext) -> UgsmsGateway:
    defaults = cast(UgsmsDefaults, context.defaults)
    settings = account.settings
    if not isinstance(settings, UgsmsAccountSettings):
        settings = UgsmsAccountSettings.model_validate(settings.model_dump())
    client = UgsmsClient(
        context.http,
        api_key=account.api_key,
        base_url=account.api_url,
        pacing=UgsmsPacing(
            pacer=context.pacer,
            bucket=context.account_bucket,
            limit=defaults.rate_limits()["account"],
        ),
        retry=RetryPolicy(attempts=context.attempts),
        timeout=defaults.timeout_seconds,
    )
    return UgsmsGateway(
        client,
        sender_id=account.sender_id,
        max_parts=settings.max_parts,
        bulk=settings.bulk,
    )


SPEC = GatewaySpec(
    capabilities=UGSMS_CAPABILITIES,
    defaults=UgsmsDefaults,
    account_settings=UgsmsAccountSettings,
    build=build,
    check_key=check_key,
    default_channel="sms",
    settings_from_defaults=lambda defaults: {"max_parts": cast(UgsmsDefaults, defaults).max_parts},
)
