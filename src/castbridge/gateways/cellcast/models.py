"""Typed `data` parts of Cellcast's answers (gateways.md §3), read leniently.

Cellcast adds and renames fields freely and writes numbers as strings or integers, so every
model ignores unknown fields, coerces scalars to what we need, and requires only the fields a
caller cannot do without (a report's `_id` and `status`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

MAX_CONTACTS = 1000
# A 24-hex Mongo ObjectId: the only form of Cellcast message id (gateways.md §3).
OBJECT_ID_CHARS = 24

_DATETIME = TypeAdapter(datetime)
M = TypeVar("M", bound=BaseModel)


def _loose_str(value: Any) -> Any:
    """Numbers come back as strings or integers (`61400000000`, `491570156`)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value


def _loose_float(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().replace(",", "")
        return text if text else None
    return value


def lenient_datetime(value: Any) -> datetime | None:
    """ISO 8601 or `Y-m-d H:i:s`; None when missing or unreadable, never an error.

    A time without an offset is read as UTC. That is right for Mongo's `createdAt` /
    `updatedAt` (always `…Z`); for other fields Cellcast may mean account-local time
    (**uncertain**, as with `scheduleAt`), so such values are only compared with each other.
    """
    if value in (None, ""):
        return None
    if isinstance(value, str):
        value = value.strip().replace(" ", "T", 1) if " " in value.strip() else value.strip()
    try:
        parsed = _DATETIME.validate_python(value)
    except ValidationError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


LooseStr = Annotated[str, BeforeValidator(_loose_str)]
LooseFloat = Annotated[float, BeforeValidator(_loose_float)]
LenientDatetime = Annotated[datetime | None, BeforeValidator(lenient_datetime)]


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


# --- POST /api/v1/gateway ----------------------------------------------------------------


class QueueItem(_Data):
    """One recipient of a send: `Number` says whose `MessageId` this is."""

    contact: LooseStr | None = Field(None, alias="Contact")
    message_id: LooseStr | None = Field(None, alias="MessageId")
    result: LooseStr | None = Field(None, alias="Result")
    number: LooseStr | None = Field(None, alias="Number")


class GatewayData(_Data):
    """`data` of a send. `invalidContacts` / `unsubscribeContacts` hold numbers (or objects
    with a number); their exact shape is not documented, so they stay raw here."""

    queue_response: list[QueueItem] = Field(default_factory=list, alias="queueResponse")
    invalid_contacts: list[Any] = Field(default_factory=list, alias="invalidContacts")
    unsubscribe_contacts: list[Any] = Field(default_factory=list, alias="unsubscribeContacts")
    total_valid_contact: int | None = Field(None, alias="totalValidContact")


# --- POST /api/v1/chat -------------------------------------------------------------------


class ChatItem(_Data):
    """The chat endpoint echoes only the number and the text: there is no message id."""

    number: LooseStr
    message: str | None = None


# --- GET /api/v2/report/message[/{id}] ---------------------------------------------------


class SmsDetail(_Data):
    messagelength: int | None = None
    smscount: int | None = None
    deductible_credit: LooseFloat | None = Field(None, alias="deductibleCredit")


class ReportDetail(_Data):
    """`GET /api/v2/report/message/{id}`; a live answer may carry only `_id`, `status`,
    `updatedAt` and `send_time`."""

    id: LooseStr = Field(alias="_id", min_length=1)
    status: LooseStr
    updated_at: LenientDatetime = Field(None, alias="updatedAt")
    send_time: LenientDatetime = None
    created_at: LenientDatetime = Field(None, alias="createdAt")
    receiver: LooseStr | None = None
    sender: LooseStr | None = None
    custom_string: LooseStr | None = Field(None, alias="customString")
    sms_detail: SmsDetail | None = Field(None, alias="smsDetail")


class ReportItem(_Data):
    """One row of the sent-message list; `customString` is not documented on rows but is
    compared when present."""

    id: LooseStr = Field(alias="_id", min_length=1)
    status: LooseStr | None = None
    message: str | None = None
    sender: LooseStr | None = None
    receiver: LooseStr | None = None
    created_at: LenientDatetime = Field(None, alias="createdAt")
    custom_string: LooseStr | None = Field(None, alias="customString")
    sms_detail: SmsDetail | None = Field(None, alias="smsDetail")


class ReportPage(_Data):
    """A page of the list; rows stay raw so one odd row does not hide the others (see
    `parse_rows`)."""

    items: list[Any] = Field(default_factory=list)
    total: int | None = None
    limit: int | None = None
    current: int | None = None
    total_pages: int | None = Field(None, alias="totalPages")
    has_next_page: bool | None = Field(None, alias="hasNextPage")
    next_page: int | None = Field(None, alias="nextPage")


# --- GET /api/v1/apiClient/* and /api/v1/user/token/verify -------------------------------


class AccountData(_Data):
    account_name: LooseStr | None = None
    account_email: LooseStr | None = None
    sms_balance: LooseFloat
    mms_balance: LooseFloat | None = None


class TokenData(_Data):
    """Whatever the token check says about its owner; none of it is required."""

    name: LooseStr | None = None
    email: LooseStr | None = None
    account_name: LooseStr | None = None


class ResponseItem(_Data):
    """One reply from `getResponses`."""

    from_number: LooseStr = Field(alias="from")
    to_number: LooseStr | None = Field(None, alias="to")
    body: str = ""
    received_at: LenientDatetime = None
    message_id: LooseStr | None = None


class ResponsesPage(_Data):
    items: list[Any] = Field(default_factory=list)
    total_pages: int | None = Field(None, alias="totalPages")
    next_page: int | None = Field(None, alias="nextPage")


class OptoutItem(_Data):
    number: LooseStr


class OptoutPage(_Data):
    items: list[Any] = Field(default_factory=list)
    total: int | None = None
    total_pages: int | None = Field(None, alias="totalPages")
    has_next_page: bool | None = Field(None, alias="hasNextPage")
    next_page: int | None = Field(None, alias="nextPage")


def is_object_id(value: str) -> bool:
    """A Cellcast message id is 24 hexadecimal characters; anything else is unknown to it."""
    return len(value) == OBJECT_ID_CHARS and all(ch in "0123456789abcdefABCDEF" for ch in value)


def parse_rows(model: type[M], items: list[Any]) -> tuple[list[M], int]:
    """The rows of a page that `model` can read, and how many it could not (callers that
    conclude "absent" from a list must not conclude it when a row was unreadable)."""
    rows: list[M] = []
    skipped = 0
    for item in items:
        try:
            rows.append(model.model_validate(item))
        except ValidationError:
            skipped += 1
    return rows, skipped
