"""The CastBrick sandbox's webhooks: registrations (`/webhooks` API) and the events it posts."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from castbridge.sandbox.castbrick.config import CastBrickSandboxConfig, SandboxAccount
from castbridge.sandbox.castbrick.core import (
    EmittedEvent,
    SandboxError,
    SandboxMessage,
    SandboxStats,
    SandboxWebhook,
    WebhookLog,
    not_found,
)
from castbridge.sandbox.castbrick.events import KNOWN_EVENT_TYPES, event_body, iso
from castbridge.sandbox.kit import WebhookPusher

_BY_LOWER = {name.lower(): name for name in KNOWN_EVENT_TYPES}


def webhook_error(message: str) -> SandboxError:
    return SandboxError(422, "Webhooks.ValidationError", message)


class WebhooksMixin:
    """Registrations per account and the events posted to them."""

    config: CastBrickSandboxConfig
    clock: Callable[[], float]
    random: random.Random
    stats: SandboxStats
    messages: dict[str, SandboxMessage]
    webhooks: dict[str, SandboxWebhook]
    webhook_logs: list[WebhookLog]
    events: list[EmittedEvent]
    pusher: WebhookPusher

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    # --- the /webhooks API ------------------------------------------------------------------

    def create_webhook(self, account: SandboxAccount, body: dict[str, Any]) -> str:
        endpoint, event_type = body.get("endpoint"), body.get("eventType")
        if not isinstance(endpoint, str) or not endpoint:
            raise webhook_error("endpoint is required")
        self._check_endpoint(endpoint)
        if not isinstance(event_type, str) or event_type.lower() not in _BY_LOWER:
            raise webhook_error(f"eventType must be one of {', '.join(KNOWN_EVENT_TYPES)}")
        # CastBrick's behaviour for a repeated registration is unknown; the sandbox accepts
        # duplicates, so only a client that lists first stays idempotent.
        webhook = SandboxWebhook(
            id=self.new_id(),
            api_key=account.api_key,
            endpoint=endpoint,
            event_type=_BY_LOWER[event_type.lower()],
            is_active=True,
            created_at=self.clock(),
        )
        self.webhooks[webhook.id] = webhook
        return webhook.id

    def _check_endpoint(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise webhook_error("endpoint must be an absolute URL")
        if parts.scheme == "https" or self.config.allow_plain_http:
            return
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise webhook_error("endpoint must use HTTPS")

    def own_webhook(self, account: SandboxAccount, webhook_id: str) -> SandboxWebhook:
        webhook = self.webhooks.get(webhook_id)
        if webhook is None or webhook.api_key != account.api_key:
            raise not_found("Webhook not found.")
        return webhook

    def list_webhooks(self, account: SandboxAccount, page: int, size: int) -> dict[str, Any]:
        own = sorted(
            (w for w in self.webhooks.values() if w.api_key == account.api_key),
            key=lambda w: (w.created_at, w.id),
        )
        return paged([w.body() for w in own], page, size)

    def toggle_webhook(self, account: SandboxAccount, webhook_id: str) -> None:
        webhook = self.own_webhook(account, webhook_id)
        webhook.is_active = not webhook.is_active

    def delete_webhook(self, account: SandboxAccount, webhook_id: str) -> None:
        self.own_webhook(account, webhook_id)
        del self.webhooks[webhook_id]

    def webhook_logs_of(
        self, account: SandboxAccount, webhook_id: str, limit: int
    ) -> list[dict[str, Any]]:
        self.own_webhook(account, webhook_id)
        logs = [log.body() for log in self.webhook_logs if log.webhook_id == webhook_id]
        return logs[-limit:][::-1]

    def test_webhook(self, account: SandboxAccount, body: dict[str, Any]) -> None:
        """`POST /webhooks/test {webhookId, payload}` posts the caller's payload as is."""
        webhook_id, payload = body.get("webhookId"), body.get("payload")
        if not isinstance(webhook_id, str) or not isinstance(payload, str):
            raise webhook_error("webhookId and payload (a string) are required")
        webhook = self.own_webhook(account, webhook_id)
        self._post(webhook, "Test", payload.encode())

    # --- events -----------------------------------------------------------------------------

    def emit(self, api_key: str, event_type: str, data: dict[str, Any]) -> EmittedEvent:
        """Record an event and post it to every active registration of its type."""
        now = self.clock()
        event_id = "evt_" + uuid.UUID(int=self.random.getrandbits(128)).hex
        body = event_body(self.config, event_id=event_id, event_type=event_type, at=now, data=data)
        event = EmittedEvent(event_id, api_key, event_type, body)
        self.events.append(event)
        self.stats.events += 1
        for webhook in list(self.webhooks.values()):
            if (
                webhook.api_key == api_key
                and webhook.event_type == event_type
                and webhook.is_active
            ):
                delivery = self._post(webhook, event_type, body)
                if delivery is not None:
                    event.deliveries.append(delivery)
        return event

    def _post(self, webhook: SandboxWebhook, event_type: str, body: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None  # pure-logic use without a server: recorded, never posted
        delivery = self.pusher.schedule(webhook.endpoint, body)
        if delivery is not None:
            self.webhook_logs.append(
                WebhookLog(self.new_id(), webhook.id, event_type, delivery, self.clock())
            )
        return delivery

    def emit_due(self) -> int:
        """Post every status event whose time has come (by the sandbox clock); returns how
        many. Called by timers, by `advance()` and before each API request."""
        now = self.clock()
        count = 0
        for message in list(self.messages.values()):
            status = message.status_at(now, self.config)
            due: list[tuple[str, str]] = []
            if status in ("sent", "delivered", "failed") and "SmsSent" not in message.emitted:
                due.append(("SmsSent", "sent"))
            if status in ("delivered", "failed") and "final" not in message.emitted:
                final = "SmsDelivered" if status == "delivered" else "SmsFailed"
                due.extend([(final, status), ("DeliveryReceipt", status)])
            for event_type, event_status in due:
                message.emitted.add("final" if event_type != "SmsSent" else "SmsSent")
                self.emit(
                    message.api_key, event_type, message.report(event_status, now, self.config)
                )
                count += 1
        return count

    def schedule_reports(self, message: SandboxMessage) -> None:
        """Wake `emit_due` when this message's next statuses are due (real seconds)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        now = self.clock()
        for offset in (self.config.sent_after_seconds, self.config.final_after_seconds):
            loop.call_later(max(0.0, message.start() + offset - now) + 0.001, self.emit_due)

    def emit_inbound(
        self, account: SandboxAccount, from_number: str, text: str, to: str | None = None
    ) -> EmittedEvent:
        """A reply from a handset (`InboundMessage`)."""
        received = iso(self.clock())
        return self.emit(
            account.api_key,
            "InboundMessage",
            {
                "id": self.new_id(),
                "from": from_number,
                "to": to or account.inbound_number,
                "content": text,
                "message": text,
                "receivedAt": received,
            },
        )

    def emit_optout(
        self, account: SandboxAccount, phone: str, *, opted_in: bool = False
    ) -> EmittedEvent:
        """A recipient opted out (STOP) or back in; later sends to it fail as opted out."""
        if opted_in:
            account.opted_out = [p for p in account.opted_out if p != phone]
        elif phone not in account.opted_out:
            account.opted_out = [*account.opted_out, phone]
        return self.emit(
            account.api_key,
            "OptOut",
            {
                "phone": phone,
                "keyword": "START" if opted_in else "STOP",
                "optedIn": opted_in,
                "optedOutAt": iso(self.clock()),
            },
        )


def paged(items: list[dict[str, Any]], page: int, size: int) -> dict[str, Any]:
    total = len(items)
    pages = max(1, -(-total // size))
    start = (page - 1) * size
    return {
        "items": items[start : start + size],
        "totalCount": total,
        "pageNumber": page,
        "pageSize": size,
        "totalPages": pages,
        "hasNextPage": page < pages,
        "hasPreviousPage": page > 1,
    }
