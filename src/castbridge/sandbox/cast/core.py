"""Shared pieces of the Cast sandbox: its error, message timeline and state attributes."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from castbridge.sandbox.cast.config import CastSandboxConfig, SandboxAccount, canonical_number
from castbridge.sandbox.kit import FaultStats

Fate = Literal["delivered", "undelivered", "failed"]


class SandboxError(Exception):
    """A Cast error answer: HTTP status, Rev B error_code and Cast's sentence."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def invalid(message: str) -> SandboxError:
    return SandboxError(400, "VALIDATION_ERROR", message)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class SandboxMessage:
    message_id: str
    api_key: str
    channel: str  # sms | otp | sim
    to: str
    sender_id: str
    text: str
    parts: int
    created_at: float
    fate: Fate
    sandbox: bool
    idempotency_key: str | None

    def status_at(self, now: float, config: CastSandboxConfig) -> dict[str, Any]:
        """The `/status` body fields at time `now` (only fields that are known)."""
        age = now - self.created_at
        body: dict[str, Any] = {"status": "sent", "sent_at": iso(self.created_at)}
        if age < config.pending_after_seconds:
            return body
        if self.fate == "failed":
            return {**body, "status": "failed", "error_message": config.failed_error_message}
        if age < config.final_after_seconds:
            return {**body, "status": "pending", "dlr_status": "ACCEPTD"}
        if self.fate == "delivered":
            done = self.created_at + config.final_after_seconds
            return {
                **body,
                "status": "delivered",
                "dlr_status": "DELIVRD",
                "delivered_at": iso(done),
            }
        return {**body, "status": "undelivered", "dlr_status": config.undelivered_dlr_status}

    def log_status(self, now: float, config: CastSandboxConfig) -> str:
        return "failed" if self.status_at(now, config)["status"] == "failed" else "sent"


@dataclass
class SandboxStats(FaultStats):
    sends: int = 0  # committed (billed or sandbox) send requests, bulk counted once
    messages: int = 0  # messages created
    replays: int = 0
    rate_limited: int = 0  # genuine 429s from the IP and account limits
    # (api_key, idempotency_key) -> times a send under that key was committed and billed, and
    # credits charged: the crash and fault tests check "billed exactly once per key".
    billed: Counter[tuple[str, str]] = field(default_factory=Counter)
    credits_charged: Counter[tuple[str, str]] = field(default_factory=Counter)
    unkeyed_sends: int = 0


class SandboxBase:
    """The attributes `CastSandbox` has, declared once for its mixins."""

    config: CastSandboxConfig
    clock: Callable[[], float]
    accounts: dict[str, SandboxAccount]
    messages: dict[str, SandboxMessage]
    scheduled: list[dict[str, Any]]
    stats: SandboxStats
    random: random.Random

    def check_account_rate(self, account: SandboxAccount, messages: int) -> None:
        """Raise a 429 SandboxError when the account is over its messages/s (see CastSandbox)."""
        raise NotImplementedError

    def _blocked(self, account: SandboxAccount, to: str, sender_id: str) -> bool:
        number = canonical_number(to)
        return any(
            canonical_number(u.phone) == number and u.sender_id == sender_id
            for u in account.unsubscribed
        )
