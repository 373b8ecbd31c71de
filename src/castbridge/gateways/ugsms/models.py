"""Typed request and response bodies of UGSMS's v2 API, read defensively (gateways.md §4).

UGSMS documents the v1 envelope `{success, message, data}` and its send `data` (`message_id`,
`recipients`, `estimated_cost`, `remaining_balance`) but shows no v2 bodies at all (uncertain):
every field is optional, numbers may arrive as strings, unknown fields are ignored, and every
gateway-supplied string is cut before we carry it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from castbridge.gateways.ugsms.errors import clean_message

# Longer ids are not ids; cut rather than carry whatever UGSMS sent (a UUID is 36).
MAX_ID_CHARS = 100
MAX_CURRENCY_CHARS = 8


def flag(value: Any) -> bool | None:
    """`success` as a boolean: True/False, 1/0 and "true"/"false" are read; anything else (a
    missing flag included) is None, which for a send means the outcome is unknown."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def number(value: Any) -> float | None:
    """A finite number from a number or a numeric string ("1,500.00" included), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip().replace(",", ""))
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def integer(value: Any) -> int | None:
    found = number(value)
    return int(found) if found is not None and found == int(found) and found >= 0 else None


def text_id(value: Any) -> str | None:
    """An id as a bounded string (UGSMS's are UUIDs; an int is accepted too)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        found = str(value).strip()
        return found[:MAX_ID_CHARS] or None
    return None


def _data(payload: dict[str, Any]) -> dict[str, Any]:
    data = payload.get("data")
    return data if isinstance(data, dict) else {}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- requests ----------------------------------------------------------------------------


class SendBody(_Model):
    """`POST /sms/send`: `numbers` comma-separated local numbers, `message_body`, optional
    `sender_id` (at most 11 characters)."""

    numbers: str = Field(min_length=1)
    message_body: str = Field(min_length=1)
    sender_id: str | None = Field(default=None, max_length=11)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class BulkItem(_Model):
    number: str = Field(min_length=1)
    message_body: str = Field(min_length=1)


class BulkBody(_Model):
    """`POST /sms/send/bulk` as one public client uses it (uncertain): one text per number."""

    messages: list[BulkItem] = Field(min_length=1)
    sender_id: str | None = Field(default=None, max_length=11)
    reference: str | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


# --- responses ---------------------------------------------------------------------------


class SendResponse(_Model):
    """An accepted send (`success == true`). `message_id` is None when v2 sends none."""

    message_id: str | None = None
    message: str | None = None
    recipients: int | None = None
    estimated_cost: float | None = None
    remaining_balance: float | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> SendResponse:
        data = _data(payload)
        message = payload.get("message")
        return cls(
            # `data.message_id` as v1 documents it; a top-level one is read too (v2 unknown).
            message_id=text_id(data.get("message_id")) or text_id(payload.get("message_id")),
            message=clean_message(message) if isinstance(message, str) else None,
            recipients=integer(data.get("recipients")),
            estimated_cost=number(data.get("estimated_cost")),
            remaining_balance=number(data.get("remaining_balance")),
        )


class BalanceResponse(_Model):
    """`GET /account/balance`: `data.balance`, else a top-level `balance`; `data.currency`."""

    balance: float
    currency: str = "UGX"

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> BalanceResponse | None:
        """None when no readable balance is in the body."""
        data = _data(payload)
        amount = number(data.get("balance"))
        if amount is None:
            amount = number(payload.get("balance"))
        if amount is None:
            return None
        currency = data.get("currency", payload.get("currency"))
        if not isinstance(currency, str) or not currency.strip():
            currency = "UGX"  # the only currency UGSMS bills in
        return cls(balance=amount, currency=currency.strip().upper()[:MAX_CURRENCY_CHARS])


class BulkOutcome(_Model):
    """One message of a bulk request, mapped back by `index` (its position in `messages`).

    `accepted` None means UGSMS's answer did not mention this index: its outcome is unknown.
    """

    index: int
    accepted: bool | None
    number: str | None = None
    parts: int | None = None
    error: str | None = None


class BulkResponse(_Model):
    success: bool
    message: str | None = None
    outcomes: tuple[BulkOutcome, ...] = ()

    @property
    def unknown(self) -> tuple[BulkOutcome, ...]:
        return tuple(o for o in self.outcomes if o.accepted is None)

    @classmethod
    def from_payload(cls, payload: dict[str, Any], size: int, success: bool) -> BulkResponse:
        """Map `data.successful_messages` and `data.failed_messages` to the `size` requested
        messages by `index`; an index both lists name, or neither, stays unknown."""
        data = _data(payload)
        ok: dict[int, dict[str, Any]] = {}
        failed: dict[int, dict[str, Any]] = {}
        for key, into in (("successful_messages", ok), ("failed_messages", failed)):
            for entry in _entries(data.get(key)):
                index = integer(entry.get("index"))
                if index is not None and index < size:
                    into.setdefault(index, entry)
        outcomes: list[BulkOutcome] = []
        for index in range(size):
            good, bad = ok.get(index), failed.get(index)
            if good is not None and bad is None:
                outcomes.append(
                    BulkOutcome(
                        index=index,
                        accepted=True,
                        number=text_id(good.get("number")),
                        parts=integer(good.get("number_of_messages")),
                    )
                )
            elif bad is not None and good is None:
                error = bad.get("error")
                outcomes.append(
                    BulkOutcome(
                        index=index,
                        accepted=False,
                        number=text_id(bad.get("number")),
                        error=clean_message(error) if isinstance(error, str) else None,
                    )
                )
            else:
                outcomes.append(BulkOutcome(index=index, accepted=None))
        message = payload.get("message")
        return cls(
            success=success,
            message=clean_message(message) if isinstance(message, str) else None,
            outcomes=tuple(outcomes),
        )


def _entries(value: Any) -> Sequence[dict[str, Any]]:
    if not isinstance(value, list):
        return ()  # `failed_messages: null` when none failed
    return [entry for entry in value if isinstance(entry, dict)]
