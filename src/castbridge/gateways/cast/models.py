"""Typed request and response bodies of Cast.ph's v1 API (gateways.md §1.4, §1.7, §1.8)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

SendChannel = Literal["sms", "otp", "sim"]
BulkChannel = Literal["sms", "sim"]
StatusChannel = Literal["sms", "sim"]

MAX_BULK_RECIPIENTS = 1000
MAX_IDEMPOTENCY_KEY_CHARS = 255

_DATETIME = TypeAdapter(datetime)


def _lenient_datetime(value: Any) -> datetime | None:
    """Cast's timestamp format is not specified; an unreadable one must not fail a status poll."""
    if value in (None, ""):
        return None
    try:
        return _DATETIME.validate_python(value)
    except ValidationError:
        return None


LenientDatetime = Annotated[datetime | None, BeforeValidator(_lenient_datetime)]


class _Response(BaseModel):
    """Cast may add fields at any time; unknown ones are ignored, never an error."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    success: bool


# --- requests ----------------------------------------------------------------------------


class SendBody(BaseModel):
    """Body of `/sms/send`, `/otp/send` and `/sim/send`. `scheduled_at` is never used by the bridge
    (a scheduled send has no `message_id` to poll) and is refused on `/otp/send`."""

    model_config = ConfigDict(frozen=True)

    to: str = Field(min_length=1)
    message: str = Field(min_length=1)
    sender_id: str | None = Field(default=None, max_length=20)
    scheduled_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class BulkBody(BaseModel):
    """Body of `/sms/bulk` and `/sim/bulk`: the same text to 1-1,000 numbers."""

    model_config = ConfigDict(frozen=True)

    to: list[str] = Field(min_length=1, max_length=MAX_BULK_RECIPIENTS)
    message: str = Field(min_length=1)
    sender_id: str | None = Field(default=None, max_length=20)
    scheduled_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


# --- responses ---------------------------------------------------------------------------


class SendResponse(_Response):
    """`200 {success, message_id, parts}`; a scheduled send is `202 {success, scheduled_at}`.

    `replayed` is not part of the body: the client sets it from `X-Idempotent-Replay: true`.
    `sandbox` is true for `cast_test_` keys (ids `SANDBOX_…`, nothing delivered, nothing billed).
    """

    message_id: str | None = None
    parts: int | None = None
    scheduled_at: str | None = None
    sandbox: bool = False
    replayed: bool = False


class BulkRecipientResult(_Response):
    to: str
    message_id: str | None = None
    parts: int | None = None
    error: str | None = None
    error_code: str | None = None


class BulkResponse(_Response):
    """Per-recipient results; `success` is true only when every recipient was accepted, and a
    partial failure is still HTTP 200 (gateways.md §1.4)."""

    total: int = 0
    sent: int = 0
    failed: int = 0
    results: list[BulkRecipientResult] = Field(default_factory=list)
    scheduled: int | None = None
    scheduled_at: str | None = None
    sandbox: bool = False
    replayed: bool = False

    @property
    def failures(self) -> list[BulkRecipientResult]:
        return [result for result in self.results if not result.success]


class StatusResponse(_Response):
    """`GET /sms/status/{id}`; `dlr_status`, `delivered_at`, `error_message` only when known."""

    message_id: str
    status: str
    sent_at: LenientDatetime = None
    dlr_status: str | None = None
    delivered_at: LenientDatetime = None
    error_message: str | None = None


class BalanceResponse(_Response):
    """Credits are SMS parts, not pesos; negative on postpaid accounts (usage owed)."""

    credits: int
    currency: str = "PHP"


class ProfileResponse(_Response):
    id: int | str | None = None
    name: str | None = None
    email: str | None = None
    mobile: str | None = None
    username: str | None = None
    credits: int | None = None
    billing_type: str | None = None  # "topup" | "postpaid"
    allowed_channels: list[str] = Field(default_factory=list)
    is_active: bool = True
    created_at: LenientDatetime = None


class SenderIdEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sender_id: str
    label: str | None = None
    channel: str = "sms"  # "sms" routes to /sms/send, "sim" to /sim/send


class SenderIdsResponse(_Response):
    sender_ids: list[SenderIdEntry] = Field(default_factory=list)


class LogEntry(BaseModel):
    """One row of `/sms/logs`; `smpp_message_id` holds the `CAST…` id (gateways.md §1.7)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int | str | None = None
    message_type: str | None = None
    sender_id: str | None = None
    destination: str
    message: str = ""
    smpp_message_id: str | None = None
    status: str | None = None
    parts: int | None = None
    created_at: LenientDatetime = None


class LogsResponse(_Response):
    count: int = 0
    logs: list[LogEntry] = Field(default_factory=list)


class UnsubscribedEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    phone: str
    sender_id: str | None = None
    unsubscribed_at: LenientDatetime = None


class UnsubscribedResponse(_Response):
    data: list[Any] = Field(default_factory=list)


class UnsubscribeTokenResponse(_Response):
    link: str
    expires_at: str | None = None


class ErrorBody(BaseModel):
    """`{success:false, error, error_code}` (Rev B) or `{success:false, error}` (Rev A)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    success: bool = False
    error: str | None = None
    error_code: str | None = None
