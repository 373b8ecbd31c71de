"""The provider-neutral gateway interface: capabilities, value types and the one GatewayError tree.

Gateways differ in ways the pipeline must respect (gateways.md §5, §6), and each adapter says
how in its `Capabilities`, so no module outside `gateways/` needs to know which gateway it
talks to:

- only some gateways dedupe a repeated send on a key (`idempotency_keys`); the others get one
  attempt per message, and an ambiguous outcome is reconciled through `find_sent` before any
  resend;
- some can be polled for a delivery status, some push reports to a webhook, one has no status
  at all (`delivery_reports=False`: an accepted message is never reported `delivered`);
- some deliver replies (push or poll), and the alphanumeric senders of some are one-way.

Every network call an adapter makes is paced through the `castbridge.limits.Pacer` it is handed,
which raises `Throttled` *before* a request leaves when the account's (or egress IP's) budget is
spent; the worker then reschedules the job instead of holding a slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

# Our normalised view of a gateway's delivery state. Never "sent": HighLevel has no such status
# and a gateway's acceptance is not a delivery.
DeliveryState = Literal["pending", "delivered", "failed"]
NumberStyle = Literal["e164", "national"]
# How replies can reach castbridge from this gateway: never; always; only when the message was
# sent from a number (an alphanumeric sender is one-way, gateways.md §3).
TwoWay = Literal["no", "yes", "numeric_sender_only"]
# Where a push-capable gateway learns castbridge's webhook URL: nowhere (no push), registered
# by castbridge through the gateway's API, or pasted by a person into the gateway's dashboard.
WebhookSetup = Literal["none", "registered", "manual"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a gateway can do; the core decides retries, polling and reporting from this alone."""

    name: str  # registry key and stored account `gateway`: lower-case, e.g. "cast"
    label: str  # how people name it, e.g. "Cast.ph"
    country: str  # ISO region it sends to by default, e.g. "PH"
    number_style: NumberStyle
    idempotency_keys: bool  # a send repeated with the same reference is never sent twice
    status_poll: bool  # `status()` works
    delivery_reports: bool  # the gateway ever confirms delivery (False: never "delivered")
    dlr_push: bool  # delivery reports arrive on castbridge's gateway webhook
    inbound_push: bool  # replies arrive on castbridge's gateway webhook
    inbound_poll: bool  # `poll_inbound()` works
    reconcile: bool  # `find_sent()` can look a send up after an ambiguous outcome
    channels: tuple[str, ...] = ("sms",)
    two_way: TwoWay = "no"
    webhook_setup: WebhookSetup = "none"
    sender_ids_api: bool = False  # `sender_ids()` lists the account's approved senders
    optout_list: bool = False  # `list_optouts()` lists the numbers the gateway blocks
    # Seconds after acceptance to wait for a pushed report before polling as a fallback.
    push_report_window_seconds: float = 120.0


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One HighLevel message to one recipient.

    `reference` is castbridge's stable key for the message, namespaced by location
    (`<locationId>:<messageId>`): an idempotent gateway gets it as its idempotency key, a
    gateway with a reference field (Cellcast `customString`) gets it there, so reconciliation
    can find the send again. Adapters may transform it to fit the gateway's alphabet, the same
    way every time.
    """

    to_e164: str
    text: str
    reference: str
    sender_id: str | None = None
    channel: str = "sms"


@dataclass(frozen=True, slots=True)
class SendResult:
    """The gateway took the message. `gateway_message_id` is None only where a gateway gives no
    id (then nothing can be polled or matched to a pushed report)."""

    gateway_message_id: str | None
    parts: int | None = None
    replayed: bool = False  # the gateway answered from its idempotency cache
    sandbox: bool = False  # a test key: nothing reached a carrier


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    """A message's state at the gateway, from a poll or a pushed report."""

    gateway_message_id: str
    state: DeliveryState
    raw_status: str
    terminal: bool
    error_code: str | None = None  # the gateway's stable code (a DLR code such as UNDELIV)
    error_message: str | None = None
    delivered_at: datetime | None = None
    opted_out: bool = False  # the gateway refused because the recipient opted out


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What `find_sent` learned about a send whose outcome was ambiguous.

    `found` is the send as the gateway recorded it. With `found=None`, `conclusive` says the
    gateway's records cover the whole window, so the send provably did not happen and may be
    made again; otherwise nothing can be concluded yet.
    """

    found: SendResult | None
    conclusive: bool = False


@dataclass(frozen=True, slots=True)
class Balance:
    amount: float
    currency: str  # "PHP", "AOA", "AUD", "UGX", or "credits" for prepaid SMS units
    unit: Literal["money", "credits"] = "credits"


@dataclass(frozen=True, slots=True)
class SenderId:
    sender_id: str
    label: str | None = None
    channel: str = "sms"


@dataclass(frozen=True, slots=True)
class AccountCheck:
    """The answer of a cheap authenticated call that proves a key works.

    `settings_update` carries what the check learned about the account that the adapter wants
    stored with it (e.g. which base path answered), merged into the account's settings.
    """

    account_name: str | None = None
    balance: Balance | None = None
    settings_update: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundSms:
    """A reply from a handset, as a push- or poll-capable gateway reports it. `from_number` is
    as the gateway wrote it; the core normalises it with the gateway's country."""

    gateway_message_id: str | None
    from_number: str
    to_number: str | None
    text: str
    received_at: datetime | None
    attachments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OptOut:
    """The gateway says `phone` opted out (or back in, `opted_in=True`)."""

    phone: str
    at: datetime | None = None
    opted_in: bool = False


WebhookKind = Literal["status", "inbound", "optout", "ignored"]


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event in a gateway webhook body, parsed defensively.

    `key` dedupes it (the gateway's event or message id, else a hash of its content); `kind`
    says which of `status`, `inbound` or `optout` is set; `ignored` keeps unknown event types
    (stored, never acted on).
    """

    key: str
    kind: WebhookKind
    event_type: str
    status: DeliveryStatus | None = None
    inbound: InboundSms | None = None
    optout: OptOut | None = None


@dataclass(frozen=True, slots=True)
class InboundPage:
    """Replies found by polling, newest first, and the cursor to store once they are saved."""

    items: tuple[InboundSms, ...]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class RegisteredWebhook:
    webhook_id: str
    event_type: str
    url: str


class GatewayError(Exception):
    """Base of every gateway failure. Never carries an API key or a whole response body.

    - `retryable`: trying again later may succeed.
    - `outcome_unknown`: the request may have reached the gateway and been acted on (a timeout
      after sending, a cut answer, a 5xx to a send, an unreadable 2xx). Only a gateway with
      idempotency keys may simply retry; the others reconcile first.
    - `pauses_account`: the account itself is refused (key invalid, revoked, expired, user
      inactive, IP not allowed, no credits): every later send would fail the same way, so the
      core holds the account's queue instead of failing messages one by one.
    - `opted_out`: the recipient opted out; not a delivery failure, never retried.
    """

    retryable: bool = False
    pauses_account: bool = False
    opted_out: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
        gateway: str = "",
        pauses_account: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        self.gateway = gateway
        if pauses_account is not None:
            self.pauses_account = pauses_account

    def __str__(self) -> str:
        where = f"{self.gateway} " if self.gateway else ""
        code = f" [{self.code}]" if self.code else ""
        status = f" (HTTP {self.http_status})" if self.http_status else ""
        return f"{where}error{code}{status}: {self.message}"


class PermanentGatewayError(GatewayError):
    """The gateway refused this request; repeating it will fail the same way."""


class CredentialsError(PermanentGatewayError):
    """Key missing, invalid, revoked, expired, account inactive or IP not allowed."""

    pauses_account = True


class InsufficientCreditsError(PermanentGatewayError):
    """Prepaid credits exhausted, postpaid limit reached or balance too low."""

    pauses_account = True


class ValidationFailedError(PermanentGatewayError):
    """A field was refused (number, text, sender ID); `message` is a sentence for the user."""


class NotFoundError(PermanentGatewayError):
    """Unknown message id (or another account's)."""


class OptedOutError(PermanentGatewayError):
    """The recipient opted out of messages from this account or sender."""

    opted_out = True


class UnsupportedError(PermanentGatewayError):
    """The gateway cannot do this at all (e.g. status on a gateway without status)."""


class BadResponseError(PermanentGatewayError):
    """A 2xx we cannot read (not JSON, wrong schema, no message id). For a send the outcome is
    unknown: the gateway may have taken the message."""


class TransientGatewayError(GatewayError):
    """Worth another try: rate limit, server error, network failure."""

    retryable = True


class RateLimitedError(TransientGatewayError):
    """The gateway answered 429: wait `retry_after` seconds. Not a failed attempt."""


class UnavailableError(TransientGatewayError):
    """5xx, timeout or connection failure. `outcome_unknown` says whether the request may have
    been acted on (a connect error or refused connection proves it never left)."""


@runtime_checkable
class Gateway(Protocol):
    """What the pipeline needs from one gateway account (one API key)."""

    capabilities: Capabilities

    def validate(self, to_e164: str, text: str, channel: str) -> None:
        """Refuse, before any call, what this account would refuse: a number outside its
        country (unless the account allows international sends), a text over its limit, a
        channel it lacks. Raises `ValidationFailedError` with a sentence a user follows."""
        ...

    def format_number(self, e164: str) -> str:
        """The recipient as this gateway wants it; raises `InvalidNumber` for another country."""
        ...

    async def send(self, request: SendRequest) -> SendResult:
        """Send one message. Raises a `GatewayError` (or `Throttled` before anything left)."""
        ...

    async def status(
        self,
        gateway_message_id: str,
        channel: str = "sms",
        *,
        to_e164: str | None = None,
        sent_at: datetime | None = None,
    ) -> DeliveryStatus:
        """Poll the delivery status; `UnsupportedError` when `capabilities.status_poll` is False.
        `to_e164` and `sent_at` (when the gateway accepted it) let a gateway whose main status
        path is a filtered list find the message there."""
        ...

    async def find_sent(
        self, request: SendRequest, *, since: datetime, until: datetime
    ) -> Reconciliation:
        """Look for `request` among the sends the gateway recorded between `since` and `until`
        (by reference where the gateway stores one, else by recipient, text and time)."""
        ...

    async def verify_credentials(self) -> AccountCheck:
        """A cheap authenticated call proving the key works; raises `CredentialsError` if not."""
        ...

    async def balance(self) -> Balance: ...

    async def sender_ids(self) -> list[SenderId]:
        """Approved senders; `UnsupportedError` when `capabilities.sender_ids_api` is False."""
        ...

    def parse_webhook(self, body: bytes, content_type: str | None) -> list[WebhookEvent]:
        """Events in a webhook body this gateway posted (pure). Raises ValueError only when the
        body is not readable at all; unknown event types come back as `ignored`."""
        ...

    async def register_webhooks(self, url: str) -> list[RegisteredWebhook]:
        """Register `url` for every event type castbridge uses (webhook_setup == "registered");
        idempotent: an already registered URL is not registered twice."""
        ...

    async def poll_inbound(self, cursor: str | None, *, max_pages: int) -> InboundPage:
        """Replies newer than `cursor`, newest first (capabilities.inbound_poll)."""
        ...

    async def list_optouts(self, *, max_pages: int) -> list[OptOut]:
        """Every number the gateway itself refuses to text for this account's sender
        (capabilities.optout_list), numbers in E.164 where the gateway's form allows."""
        ...


__all__ = [
    "AccountCheck",
    "BadResponseError",
    "Balance",
    "Capabilities",
    "CredentialsError",
    "DeliveryState",
    "DeliveryStatus",
    "Gateway",
    "GatewayError",
    "InboundPage",
    "InboundSms",
    "InsufficientCreditsError",
    "NotFoundError",
    "NumberStyle",
    "OptOut",
    "OptedOutError",
    "PermanentGatewayError",
    "RateLimitedError",
    "Reconciliation",
    "RegisteredWebhook",
    "SendRequest",
    "SendResult",
    "SenderId",
    "TransientGatewayError",
    "TwoWay",
    "UnavailableError",
    "UnsupportedError",
    "ValidationFailedError",
    "WebhookEvent",
    "WebhookKind",
    "WebhookSetup",
]
