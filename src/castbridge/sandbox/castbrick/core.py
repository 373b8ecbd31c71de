"""Shared pieces of the CastBrick sandbox: its error, messages, webhooks and statistics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from castbridge.sandbox.castbrick.config import CastBrickSandboxConfig, FieldStyle
from castbridge.sandbox.castbrick.events import cased, iso
from castbridge.sandbox.kit import Delivery, FaultStats

Fate = Literal["delivered", "failed"]


class SandboxError(Exception):
    """A CastBrick error answer, `{error, message, status}` (OpenAPI `ApiError`)."""

    def __init__(
        self, status: int, error: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, "status": self.status}


def validation(message: str) -> SandboxError:
    return SandboxError(422, "SMS.ValidationError", message)


def bad_request(message: str) -> SandboxError:
    return SandboxError(400, "BadRequest", message)


def not_found(message: str) -> SandboxError:
    return SandboxError(404, "NotFound", message)


@dataclass
class SandboxMessage:
    """One recipient of one send (castbridge always sends to one)."""

    id: str  # the item's own id
    batch_id: str  # the send's `messageId`
    api_key: str
    phone: str
    text: str
    sender_id: str
    parts: int
    cost: float
    created_at: float
    scheduled_at: float | None
    fate: Fate
    error_message: str | None
    emitted: set[str] = field(default_factory=set)
    retry_count: int = 0

    def start(self) -> float:
        return self.scheduled_at if self.scheduled_at is not None else self.created_at

    def status_at(self, now: float, config: CastBrickSandboxConfig) -> str:
        """Lower-case status: scheduled → queued → sent → delivered | failed."""
        if self.scheduled_at is not None and now < self.scheduled_at:
            return "scheduled"
        age = now - self.start()
        if age < config.sent_after_seconds:
            return "queued"
        if age < config.final_after_seconds:
            return "sent"
        return self.fate

    def sent_at(self, now: float, config: CastBrickSandboxConfig) -> float | None:
        when = self.start() + config.sent_after_seconds
        return when if now >= when else None

    def delivered_at(self, now: float, config: CastBrickSandboxConfig) -> float | None:
        when = self.start() + config.final_after_seconds
        return when if self.fate == "delivered" and now >= when else None

    def item(self, now: float, config: CastBrickSandboxConfig) -> dict[str, Any]:
        """The list item / `GET /sms/{id}` body in the configured spelling."""
        status = self.status_at(now, config)
        common: dict[str, Any] = {
            "id": self.id,
            "status": cased(status, config.status_case),
            "senderId": self.sender_id,
            "errorMessage": self.error_message if status == "failed" else None,
            "retryCount": self.retry_count,
            "scheduledAt": iso(self.scheduled_at),
            "sentAt": iso(self.sent_at(now, config)),
            "deliveredAt": iso(self.delivered_at(now, config)),
        }
        return {**common, **_spelled(self, config.field_style)}

    def report(self, status: str, now: float, config: CastBrickSandboxConfig) -> dict[str, Any]:
        """The payload of a status webhook."""
        return {
            "messageId": self.batch_id,
            "id": self.id,
            "recipientPhone": self.phone,
            "phone": self.phone,
            "senderId": self.sender_id,
            "status": cased(status, config.status_case),
            "errorMessage": self.error_message if status == "failed" else None,
            "sentAt": iso(self.sent_at(now, config)),
            "deliveredAt": iso(self.delivered_at(now, config)),
        }


def _spelled(message: SandboxMessage, style: FieldStyle) -> dict[str, Any]:
    sdk = {
        "recipientPhone": message.phone,
        "message": message.text,
        "contactName": None,
        "campaignName": None,
        "campaignId": None,
    }
    openapi = {
        "messageId": message.batch_id,
        "phone": message.phone,
        "content": message.text,
        "createdAt": iso(message.created_at),
    }
    if style == "sdk":
        return sdk
    if style == "openapi":
        return openapi
    return {**sdk, **openapi}


@dataclass
class SandboxWebhook:
    id: str
    api_key: str
    endpoint: str
    event_type: str
    is_active: bool
    created_at: float

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "eventType": self.event_type,
            "isActive": self.is_active,
            "createdAt": iso(self.created_at),
        }


@dataclass
class WebhookLog:
    """One event posted to one webhook (`GET /webhooks/{id}/logs`)."""

    id: str
    webhook_id: str
    event_type: str
    delivery: Delivery
    created_at: float

    def body(self) -> dict[str, Any]:
        statuses = self.delivery.statuses
        return {
            "id": self.id,
            "webhookId": self.webhook_id,
            "eventType": self.event_type,
            "statusCode": statuses[-1] if statuses else None,
            "attempt": len(statuses),
            "deliveredAt": iso(self.created_at) if self.delivery.delivered else None,
        }


@dataclass
class EmittedEvent:
    event_id: str
    api_key: str
    event_type: str
    body: dict[str, Any]
    deliveries: list[Delivery] = field(default_factory=list)


@dataclass
class SandboxStats(FaultStats):
    sends: int = 0  # committed send requests
    messages: int = 0  # recipients created
    rate_limited: int = 0  # genuine 429s from the per-key limit
    events: int = 0  # webhook events emitted (whether or not anyone was registered)
    # (api_key, recipient E.164, text) -> times a send to it was committed and billed: the
    # fault and reconciliation tests check "never sent twice".
    billed: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # "METHOD /route" -> requests answered, so tests can see which paths a client used.
    calls: Counter[str] = field(default_factory=Counter)
