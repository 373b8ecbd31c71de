"""Typed, tolerant bodies of CastBrick's API (gateways.md §2): both field spellings accepted.

The docs, the SDKs and the OpenAPI file spell several fields differently (`id`/`messageId`,
`recipientPhone`/`phone`, `message`/`content`, `recipientCount`/`recipientsCount`), so every
response model reads each spelling, ignores fields it does not know, and compares statuses
case-insensitively (the official mock answers `"Queued"`, `"Delivered"`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

MAX_PAGE_SIZE = 100
_DATETIME = TypeAdapter(datetime)
_ID_CHARS = 200


def _lenient_datetime(value: Any) -> datetime | None:
    """An unreadable timestamp must not fail a status poll; a naive one is read as UTC."""
    if value in (None, ""):
        return None
    try:
        parsed = _DATETIME.validate_python(value)
    except ValidationError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _lenient_id(value: Any) -> str | None:
    """Ids are UUIDs in the docs; accept numbers too, and cut anything absurdly long."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | str):
        text = str(value).strip()
        return text[:_ID_CHARS] or None
    return None


def _lenient_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _lenient_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _lenient_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


LenientDatetime = Annotated[datetime | None, BeforeValidator(_lenient_datetime)]
LenientId = Annotated[str | None, BeforeValidator(_lenient_id)]
LenientStr = Annotated[str | None, BeforeValidator(_lenient_str)]
LenientInt = Annotated[int | None, BeforeValidator(_lenient_int)]
LenientBool = Annotated[bool | None, BeforeValidator(_lenient_bool)]


class _Response(BaseModel):
    """CastBrick may add fields at any time; unknown ones are ignored, never an error."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class SendBody(BaseModel):
    """`POST /sms/send` for one HighLevel message. Never `scheduledAt` (a scheduled send would
    be reported accepted before anything left) and never `contactListId`."""

    model_config = ConfigDict(frozen=True)

    recipients: list[str] = Field(min_length=1, max_length=1)
    content: str = Field(min_length=1)
    sender_id: str | None = None
    fallback: bool

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "recipients": list(self.recipients),
            "content": self.content,
            "fallback": self.fallback,
        }
        if self.sender_id:
            body["senderId"] = self.sender_id
        return body


class SendResponse(_Response):
    """`200 {messageId, status, recipientCount, timestamp}` (+ the OpenAPI file's `id`,
    `recipientsCount`, `costAoa`, `createdAt`, and a nullable `error`)."""

    message_id: LenientId = Field(None, validation_alias=AliasChoices("messageId", "id"))
    status: LenientStr = None
    recipient_count: LenientInt = Field(
        None, validation_alias=AliasChoices("recipientCount", "recipientsCount")
    )
    cost_aoa: float | None = Field(None, validation_alias=AliasChoices("costAoa", "cost"))
    timestamp: LenientDatetime = Field(
        None, validation_alias=AliasChoices("timestamp", "createdAt")
    )
    error: LenientStr = None

    @field_validator("cost_aoa", mode="before")
    @classmethod
    def _number(cls, value: Any) -> float | None:
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )


class SmsMessage(_Response):
    """One list item (or `GET /sms/{id}`), in the SDKs' spelling or the OpenAPI aliases."""

    id: LenientId = None
    message_id: LenientId = Field(None, validation_alias=AliasChoices("messageId", "message_id"))
    phone: LenientStr = Field(
        None, validation_alias=AliasChoices("recipientPhone", "phone", "recipient", "to")
    )
    text: LenientStr = Field(None, validation_alias=AliasChoices("message", "content", "text"))
    status: str = ""
    sender_id: LenientStr = Field(None, validation_alias=AliasChoices("senderId", "sender_id"))
    error_message: LenientStr = Field(
        None, validation_alias=AliasChoices("errorMessage", "error", "error_message")
    )
    retry_count: LenientInt = Field(None, validation_alias=AliasChoices("retryCount"))
    scheduled_at: LenientDatetime = Field(None, validation_alias=AliasChoices("scheduledAt"))
    sent_at: LenientDatetime = Field(None, validation_alias=AliasChoices("sentAt"))
    delivered_at: LenientDatetime = Field(None, validation_alias=AliasChoices("deliveredAt"))
    created_at: LenientDatetime = Field(None, validation_alias=AliasChoices("createdAt"))

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> str:
        return value.strip()[:64] if isinstance(value, str) else ""

    @model_validator(mode="after")
    def _has_an_id(self) -> SmsMessage:
        if not (self.id or self.message_id):
            raise ValueError("a message needs an id or a messageId")
        return self

    def ids(self) -> tuple[str, ...]:
        """Every id the message answers to (its own and its batch's)."""
        return tuple(i for i in (self.message_id, self.id) if i)

    @property
    def key(self) -> str:
        """The id castbridge stores: the batch `messageId` the send answered with, where the
        item carries one, else its own `id` (with one recipient per send they are the same
        message; whether they are the same value is uncertain, gateways.md §2)."""
        return self.message_id or self.id or ""

    @property
    def when(self) -> datetime | None:
        return self.created_at or self.sent_at or self.scheduled_at


class MessagePage(_Response):
    """`GET /sms`: `{items, totalCount, pageNumber, totalPages, hasNextPage, hasPreviousPage}`.

    An item we cannot read is counted in `unreadable` instead of failing the page, so a status
    poll still works; reconciliation treats such a page as not conclusive.
    """

    items: list[SmsMessage] = Field(default_factory=list)
    unreadable: int = 0
    total_count: LenientInt = Field(None, validation_alias=AliasChoices("totalCount"))
    page_number: LenientInt = Field(None, validation_alias=AliasChoices("pageNumber"))
    page_size: LenientInt = Field(None, validation_alias=AliasChoices("pageSize"))
    total_pages: LenientInt = Field(None, validation_alias=AliasChoices("totalPages"))
    has_next_page: LenientBool = Field(None, validation_alias=AliasChoices("hasNextPage"))

    @model_validator(mode="before")
    @classmethod
    def _items(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        raw = data.get("items")
        if not isinstance(raw, list):
            raise ValueError("items must be a list")
        items: list[SmsMessage] = []
        bad = 0
        for entry in raw:
            try:
                items.append(SmsMessage.model_validate(entry))
            except ValidationError:
                bad += 1
        return {**data, "items": items, "unreadable": bad}

    def more_after(self, page: int, page_size: int) -> bool | None:
        """Whether another page follows `page`: `hasNextPage`, else `totalPages`, else
        `totalCount`; None when the body says nothing about it."""
        if self.has_next_page is not None:
            return self.has_next_page
        if self.total_pages is not None:
            return page < self.total_pages
        if self.total_count is not None:
            return page * page_size < self.total_count
        return None


class BalanceResponse(_Response):
    """`GET /billing/balance` → `{balance, lowBalanceThreshold, alertEmail}` in AOA."""

    balance: float
    low_balance_threshold: float | None = Field(
        None, validation_alias=AliasChoices("lowBalanceThreshold")
    )
    alert_email: LenientStr = Field(None, validation_alias=AliasChoices("alertEmail"))
    currency: str = "AOA"
    credits: LenientInt = None

    @field_validator("balance", "low_balance_threshold", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        return value

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> str:
        return value.strip().upper()[:8] if isinstance(value, str) and value.strip() else "AOA"


class Webhook(_Response):
    """`{id, endpoint, eventType, isActive, createdAt}`."""

    id: str
    endpoint: str
    event_type: str = Field(validation_alias=AliasChoices("eventType", "event_type", "event"))
    is_active: bool = Field(True, validation_alias=AliasChoices("isActive", "active"))
    created_at: LenientDatetime = Field(None, validation_alias=AliasChoices("createdAt"))

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        return _lenient_id(value) or value

    @field_validator("is_active", mode="before")
    @classmethod
    def _active(cls, value: Any) -> bool:
        parsed = _lenient_bool(value)
        return True if parsed is None else parsed


class WebhookPage(_Response):
    items: list[Webhook] = Field(default_factory=list)
    total_count: LenientInt = Field(None, validation_alias=AliasChoices("totalCount"))
    total_pages: LenientInt = Field(None, validation_alias=AliasChoices("totalPages"))
    has_next_page: LenientBool = Field(None, validation_alias=AliasChoices("hasNextPage"))

    def more_after(self, page: int, page_size: int) -> bool:
        if self.has_next_page is not None:
            return self.has_next_page
        if self.total_pages is not None:
            return page < self.total_pages
        if self.total_count is not None:
            return page * page_size < self.total_count
        return len(self.items) >= page_size
