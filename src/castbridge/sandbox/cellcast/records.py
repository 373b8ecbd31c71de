"""Shared pieces of the Cellcast sandbox: its error answers, number forms, records, statistics."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from castbridge.sandbox.cellcast.config import CellcastSandboxConfig
from castbridge.sandbox.kit import FaultStats

# The four contact forms Cellcast accepts (gateways.md §3): +614…, 614…, 04…, 4….
CONTACT_FORMS = re.compile(r"^(?:\+61\d{9}|61\d{9}|0\d{9}|\d{9})$")
CONTACTS_MESSAGE = "contacts must start with 61/+61 and have 11 digits, or 9 digits"


class SandboxError(Exception):
    """A Cellcast error answer: its HTTP status and its body, in whichever shape it uses."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(str(body.get("message", "")))
        self.status = status
        self.body = body
        self.headers = headers or {}


def token_expired() -> SandboxError:
    return SandboxError(401, {"code": 401, "message": "Token expired"})


def bad_request(message: str) -> SandboxError:
    """The `400 {code, message, stack}` shape of Cellcast's request validation."""
    stack = f"Error: {message}\n    at validateRequest (/app/src/validators/gateway.js:42:11)"
    return SandboxError(400, {"code": 400, "message": message, "stack": stack})


def refusal(
    message: str,
    *,
    status: int = 200,
    error: dict[str, Any] | None = None,
    data: Any = None,
) -> SandboxError:
    """The flat `status: false` shape (often under HTTP 200)."""
    return SandboxError(
        status,
        {
            "status": False,
            "message": message,
            "data": [] if data is None else data,
            "error": error if error is not None else {"message": message},
        },
    )


def app_envelope(message: str, data: Any) -> dict[str, Any]:
    """The `app_type …` envelope of `gateway` and `chat` answers (seeds/003)."""
    return {
        "app_type": "web",
        "app_version": "1.0",
        "maintainence": 0,
        "new_version": 0,
        "force_update": 0,
        "invalid_token": 0,
        "refresh_token": "",
        "show_message": 0,
        "is_enc": False,
        "status": True,
        "message": message,
        "message_type": "toast",
        "data": data,
        "error": {},
    }


def meta_envelope(data: Any, *, status: str = "success", **extra: Any) -> dict[str, Any]:
    return {"meta": {"code": 200, "status": status}, **extra, "data": data}


def international(contact: str) -> str:
    """Any accepted contact form as Cellcast stores it: `61` + nine digits."""
    digits = contact.lstrip("+")
    if digits.startswith("61") and len(digits) == 11:
        return digits
    if digits.startswith("0") and len(digits) == 10:
        return "61" + digits[1:]
    if len(digits) == 9:
        return "61" + digits
    return digits


def national_without_zero(number: str) -> str:
    """`61491570156` → `491570156`, as list rows write `receiver`."""
    return number[2:] if number.startswith("61") else number


def iso(ts: float) -> str:
    stamp = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def canonical_text(text: str) -> str:
    """Texts compare equal whatever their new lines (we send \\r\\n, tests write \\n)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass
class SandboxMessage:
    message_id: str
    api_key: str
    channel: str  # "sms" (/gateway) or "chat"
    receiver: str  # 61…
    sender: str  # as given; #SharedNum# shows as the account's shared number
    text: str
    custom_string: str | None
    parts: int
    credit: float
    created_at: float
    fate: str  # "delivered" or a final failure status
    reply_stop: bool
    scheduled: bool = False
    pushed: bool = False

    def status_at(self, now: float, config: CellcastSandboxConfig) -> str:
        if self.scheduled:
            return "scheduled"
        age = now - self.created_at
        if age < config.sent_after_seconds:
            return "queued"
        if age < config.final_after_seconds:
            return "sent"
        return self.fate

    def updated_at(self, now: float, config: CellcastSandboxConfig) -> float:
        status = self.status_at(now, config)
        if status in ("queued", "scheduled"):
            return self.created_at
        if status == "sent":
            return self.created_at + config.sent_after_seconds
        return self.created_at + config.final_after_seconds

    def send_time(self, now: float, config: CellcastSandboxConfig) -> float | None:
        if self.status_at(now, config) in ("queued", "scheduled"):
            return None
        return self.created_at + config.sent_after_seconds

    def final_at(self, config: CellcastSandboxConfig) -> float | None:
        return None if self.scheduled else self.created_at + config.final_after_seconds


@dataclass
class SandboxReply:
    """A reply from a handset, kept for `getResponses`."""

    message_id: str
    api_key: str
    sender: str  # 61…, the customer
    receiver: str  # 61…, the shared or dedicated number
    text: str
    received_at: float
    original: SandboxMessage | None


@dataclass
class CellcastStats(FaultStats):
    sends: int = 0  # accepted send requests (gateway + chat)
    messages: int = 0  # messages created
    rate_limited: int = 0  # genuine 429s from the per-key limit
    scheduled_requests: int = 0  # sends carrying scheduleAt or delay (castbridge: never)
    # Times a message was created and charged, by (api key, customString) and by (api key,
    # recipient 61…, text): the tests' proof that nothing was sent twice.
    billed_refs: Counter[tuple[str, str]] = field(default_factory=Counter)
    billed_texts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    pushes: int = 0
    replies: int = 0
    dropped_replies: int = 0  # replies to one-way senders, which never come back


class SandboxBase:
    """The attributes `CellcastSandbox` has, declared once for its mixins."""

    config: CellcastSandboxConfig
    clock: Callable[[], float]
    messages: dict[str, SandboxMessage]
    replies: list[SandboxReply]
    stats: CellcastStats
    random: random.Random

    def new_id(self) -> str:
        """A fresh 24-hex ObjectId-like id, deterministic under the config's seed."""
        while True:
            candidate = f"{self.random.getrandbits(96):024x}"
            if candidate not in self.messages:
                return candidate
