"""The provider-neutral gateway interface, its value types and the GatewayError tree.

Gateways differ in ways the pipeline must know about (gateways.md §5): only Cast dedupes sends
on an idempotency key; Cast and UGSMS never push delivery reports (Cast must be polled, UGSMS
has no status at all); CastBrick and Cellcast push reports and replies to a webhook. Each
adapter declares this in `Capabilities`, and the worker decides from it whether a send may be
retried after an ambiguous failure and whether to poll.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

# Our normalised view of a gateway's delivery state. Never "sent": HighLevel has no such status
# and a gateway's acceptance is not a delivery.
DeliveryState = Literal["pending", "delivered", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    name: str
    country: str  # ISO region the gateway sends to, e.g. "PH"
    number_style: Literal["e164", "national"]
    idempotency_keys: bool  # a send may be repeated with the same key without a second charge
    status_poll: bool
    dlr_push: bool
    inbound_push: bool
    inbound_poll: bool
    channels: tuple[str, ...] = ("sms",)


@dataclass(frozen=True, slots=True)
class SendRequest:
    to_e164: str
    text: str
    idempotency_key: str
    sender_id: str | None = None
    channel: str = "sms"


@dataclass(frozen=True, slots=True)
class SendResult:
    gateway_message_id: str
    parts: int | None
    replayed: bool = False  # the gateway answered from its idempotency cache
    sandbox: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    gateway_message_id: str
    state: DeliveryState
    raw_status: str
    terminal: bool
    dlr_status: str | None = None
    error_message: str | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    credits: float
    currency: str


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A reply from a handset, as a push- or poll-capable gateway reports it."""

    gateway_message_id: str
    from_e164: str
    to: str | None
    text: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class SenderId:
    sender_id: str
    label: str | None = None
    channel: str = "sms"


class GatewayError(Exception):
    """Base of every gateway failure. Never carries an API key or a whole response body.

    `retryable`: trying again later may succeed. `outcome_unknown`: the request may have reached
    the gateway, so a retry is safe only where the gateway dedupes on an idempotency key.
    `credentials_problem`: the account's key or settings need a human (flag the location).
    """

    retryable: bool = False
    credentials_problem: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
        gateway: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        self.gateway = gateway

    def __str__(self) -> str:
        where = f"{self.gateway} " if self.gateway else ""
        code = f" [{self.code}]" if self.code else ""
        status = f" (HTTP {self.http_status})" if self.http_status else ""
        return f"{where}error{code}{status}: {self.message}"


class PermanentGatewayError(GatewayError):
    """The gateway refused this request; repeating it will fail the same way."""


class CredentialsError(PermanentGatewayError):
    """Key missing, invalid, revoked, expired, account inactive or IP not allowed."""

    credentials_problem = True


class InsufficientCreditsError(PermanentGatewayError):
    """Prepaid credits exhausted or postpaid limit reached."""


class ValidationFailedError(PermanentGatewayError):
    """A field was refused (number, text, sender ID)."""


class NotFoundError(PermanentGatewayError):
    """Unknown message id (or another account's)."""


class TransientGatewayError(GatewayError):
    """Worth another try: rate limit, server error, network failure."""

    retryable = True


class RateLimitedError(TransientGatewayError):
    """429: wait `retry_after` seconds before the next request."""


class UnavailableError(TransientGatewayError):
    """5xx, timeout or connection failure."""


class UnsupportedError(PermanentGatewayError):
    """The gateway cannot do this at all (e.g. inbound on Cast)."""


@runtime_checkable
class Gateway(Protocol):
    """What the pipeline needs from any SMS gateway account (one API key)."""

    capabilities: Capabilities

    def format_number(self, e164: str) -> str:
        """The recipient as this gateway wants it; raises ValueError for another country."""
        ...

    def max_chars(self) -> int:
        """Longest text this account accepts; longer is refused before any call."""
        ...

    async def send(self, request: SendRequest) -> SendResult: ...

    async def status(self, gateway_message_id: str, channel: str = "sms") -> DeliveryStatus:
        """Raise UnsupportedError when `capabilities.status_poll` is False."""
        ...

    async def balance(self) -> Balance: ...

    async def sender_ids(self) -> list[SenderId]: ...


@dataclass(slots=True)
class WebhookEvents:
    """What a push-capable gateway's webhook carried, already parsed and validated."""

    statuses: list[DeliveryStatus] = field(default_factory=list)
    inbound: list[InboundMessage] = field(default_factory=list)
