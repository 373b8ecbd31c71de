"""The CastBrick sandbox's state and rules: accounts, sends, billing, lists, limits, statistics.

Pure logic with no HTTP: `castbridge.sandbox.castbrick.app` turns requests into calls here, and
tests read the same object as `app.state.sandbox`. Webhook registrations and the events the
sandbox posts live in `hooks.WebhooksMixin` (body shapes: `castbridge.sandbox.castbrick.events`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp

from castbridge.sandbox.castbrick.config import (
    CastBrickSandboxConfig,
    Faults,
    SandboxAccount,
)
from castbridge.sandbox.castbrick.core import (
    EmittedEvent,
    Fate,
    SandboxError,
    SandboxMessage,
    SandboxStats,
    SandboxWebhook,
    WebhookLog,
    bad_request,
    not_found,
    validation,
)
from castbridge.sandbox.castbrick.hooks import WebhooksMixin, paged
from castbridge.sandbox.kit import DebtBucket, FaultStats, SandboxClock, WebhookPusher
from castbridge.sms.phone import InvalidNumber, normalize
from castbridge.sms.text import segments

_INJECTED = {
    429: ("TooManyRequests", "Rate limit exceeded."),
    500: ("InternalServerError", "An unexpected error occurred."),
    502: ("BadGateway", "Upstream error."),
    503: ("ServiceUnavailable", "Service temporarily unavailable."),
    504: ("GatewayTimeout", "Upstream timed out."),
}
# The docs' filter values; "pending" also finds messages in the dispatch queue.
_FILTERS = {
    "pending": {"pending", "queued"},
    "queued": {"queued"},
    "sent": {"sent"},
    "delivered": {"delivered"},
    "failed": {"failed"},
    "scheduled": {"scheduled"},
}


def parse_time(name: str, value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"{name} must be an ISO 8601 datetime.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


class CastBrickSandbox(WebhooksMixin):
    """A faithful local CastBrick (gateways.md §2) with inspectable state."""

    def __init__(
        self,
        config: CastBrickSandboxConfig | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config if config is not None else CastBrickSandboxConfig()
        self.clock: Callable[[], float] = clock if clock is not None else SandboxClock()
        self.accounts: dict[str, SandboxAccount] = {a.api_key: a for a in self.config.accounts}
        self.messages: dict[str, SandboxMessage] = {}
        self.webhooks: dict[str, SandboxWebhook] = {}
        self.webhook_logs: list[WebhookLog] = []
        self.events: list[EmittedEvent] = []
        self.stats = SandboxStats()
        self.random = random.Random(self.config.seed)
        self.pusher = WebhookPusher(
            attempts=self.config.webhook_attempts, retry_delay=self.config.webhook_retry_delay
        )
        self._buckets: dict[str, DebtBucket] = {}

    # --- the kit's protocol -----------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self.config.faults

    def set_faults(self, faults: Faults) -> None:
        self.config.faults = faults

    @property
    def fault_stats(self) -> FaultStats:
        return self.stats

    def is_api_request(self, method: str, path: str) -> bool:
        return not path.startswith("/_sandbox")

    def is_send_request(self, method: str, path: str) -> bool:
        return method == "POST" and path.endswith("/sms/send")

    def error_app(self, status: int) -> ASGIApp:
        from castbridge.sandbox.castbrick.http import error_response, html_response

        if self.config.html_gateway_errors and status in (502, 503, 504):
            return html_response(status)
        error, message = _INJECTED.get(status, (f"Http{status}", "Injected fault."))
        headers = self.retry_after_header() if status == 429 else None
        return error_response(SandboxError(status, error, message, headers))

    def admit(self, client_ip: str) -> ASGIApp | None:
        return None  # CastBrick documents no per-IP limit; the per-key one is in `authenticate`

    def reset_stats(self) -> None:
        self.stats = SandboxStats()

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock (status timelines) and post the reports now due."""
        advance = getattr(self.clock, "advance", None)
        if advance is None:
            raise TypeError("this sandbox's clock cannot be advanced")
        advance(seconds)
        self.emit_due()

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        by_status = Counter(m.status_at(now, self.config) for m in self.messages.values())
        return {
            **self.stats.snapshot(),
            "sends": self.stats.sends,
            "messages": self.stats.messages,
            "rate_limited_429": self.stats.rate_limited,
            "events": self.stats.events,
            "billed": [
                {"api_key": _mask(key), "to": to, "text": text, "count": count}
                for (key, to, text), count in self.stats.billed.items()
            ],
            "calls": dict(self.stats.calls),
            "messages_by_status": dict(by_status),
            "balances": {_mask(k): a.balance for k, a in self.accounts.items()},
            "webhooks": len(self.webhooks),
        }

    # --- accounts, auth, limits -------------------------------------------------------------

    def account(self, api_key: str) -> SandboxAccount:
        return self.accounts[api_key]

    def add_account(self, account: SandboxAccount) -> SandboxAccount:
        self.accounts[account.api_key] = account
        self._buckets.pop(account.api_key, None)
        return account

    def billed(self, to: str, text: str, api_key: str | None = None) -> int:
        """How many times a send of `text` to `to` was committed and charged."""
        return sum(
            n
            for (key, phone, body), n in self.stats.billed.items()
            if phone == to and body == text and (api_key is None or key == api_key)
        )

    def retry_after_header(self) -> dict[str, str]:
        return {"Retry-After": str(self.config.retry_after_seconds)}

    def authenticate(self, authorization: str | None, *, sms_call: bool) -> SandboxAccount:
        """Bearer key → account; then the key's scope and its rate limit (every request)."""
        refused = SandboxError(401, "Unauthorized", "A valid Bearer API key is required.")
        if not authorization or not authorization.startswith("Bearer "):
            raise refused
        account = self.accounts.get(authorization[len("Bearer ") :].strip())
        if account is None or account.revoked:
            raise refused
        if "Full" not in account.scopes and not sms_call:
            raise SandboxError(
                403, "Forbidden", "This API key does not have permission for this resource."
            )
        bucket = self._buckets.get(account.api_key)
        if bucket is None or bucket.rate != account.rate_limit:
            bucket = self._buckets[account.api_key] = DebtBucket(
                account.rate_limit, account.rate_limit
            )
        if not bucket.take(1):
            self.stats.rate_limited += 1
            raise SandboxError(
                429,
                "TooManyRequests",
                f"Rate limit exceeded. Retry after {self.config.retry_after_seconds} s.",
                self.retry_after_header(),
            )
        return account

    # --- sends ------------------------------------------------------------------------------

    def send(self, account: SandboxAccount, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /sms/send`: validate, bill, create one message per recipient."""
        content = body.get("content", body.get("message"))
        if not isinstance(content, str) or not content:
            raise validation("content is required.")
        if len(content) > self.config.max_content_chars:
            raise validation(
                f"content is too long (max {self.config.max_content_chars} characters)."
            )
        if body.get("contactListId") is not None:
            raise validation("contactListId is not supported by this sandbox.")
        raw = body.get("recipients", body.get("to"))
        if not isinstance(raw, list) or not raw:
            raise validation("recipients is required (or contactListId).")
        if not all(isinstance(r, str) for r in raw):
            raise validation("recipients must be an array of E.164 phone numbers.")
        fallback = body.get("fallback", True)
        if not isinstance(fallback, bool):
            raise validation("fallback must be a boolean.")
        sender = self._sender(account, body.get("senderId"), fallback)
        scheduled_at = self._scheduled(body.get("scheduledAt"))
        recipients: list[str] = []
        for number in raw:
            try:
                e164 = normalize(number, "AO") if number.startswith("+") else None
            except InvalidNumber:
                e164 = None
            if e164 is not None and e164 not in recipients:
                recipients.append(e164)
        if not recipients:
            raise SandboxError(400, "SMS.NoRecipients", "No valid recipients after deduplication.")
        parts = segments(content).count
        cost = parts * account.cost_per_sms * len(recipients)
        if account.balance < cost:
            raise SandboxError(
                402, "SMS.InsufficientCredits", "Not enough credits — top up your balance."
            )
        # Committed from here on: charged, counted, and visible in GET /sms.
        before = account.balance
        account.balance = round(account.balance - cost, 2)
        batch_id = self.new_id()
        now = self.clock()
        for phone in recipients:
            fate, error = self._fate(account, phone)
            message = SandboxMessage(
                id=batch_id if self.config.recipient_ids == "same" else self.new_id(),
                batch_id=batch_id,
                api_key=account.api_key,
                phone=phone,
                text=content,
                sender_id=sender,
                parts=parts,
                cost=parts * account.cost_per_sms,
                created_at=now,
                scheduled_at=scheduled_at,
                fate=fate,
                error_message=error,
            )
            self.messages[message.id] = message
            self.stats.messages += 1
            self.stats.billed[(account.api_key, phone, content)] += 1
            self.schedule_reports(message)
        self.stats.sends += 1
        if before >= account.low_balance_threshold > account.balance:
            self.emit(
                account.api_key,
                "LowBalance",
                {
                    "balance": account.balance,
                    "lowBalanceThreshold": account.low_balance_threshold,
                    "currency": "AOA",
                },
            )
        status = "scheduled" if scheduled_at is not None else "queued"
        stamp = _iso(now)
        return {
            "id": batch_id,
            "messageId": batch_id,
            "status": status.capitalize() if self.config.status_case == "capitalized" else status,
            "recipientCount": len(recipients),
            "recipientsCount": len(recipients),
            "costAoa": cost,
            "timestamp": stamp,
            "createdAt": stamp,
        }

    def _sender(self, account: SandboxAccount, sender_id: Any, fallback: bool) -> str:
        if sender_id is None or sender_id == "":
            return account.default_sender
        if not isinstance(sender_id, str):
            raise validation("senderId must be a string.")
        if sender_id in account.sender_ids:
            return sender_id
        if fallback:
            return account.default_sender  # silently, as the docs' `fallback: true` says
        raise validation(f"Sender ID '{sender_id[:20]}' is not registered for this workspace.")

    def _scheduled(self, value: Any) -> float | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise validation("scheduledAt must be an ISO 8601 datetime.")
        try:
            when = parse_time("scheduledAt", value)
        except SandboxError:
            raise validation("scheduledAt must be an ISO 8601 datetime.") from None
        if when is not None and when <= self.clock():
            raise validation("scheduledAt must be in the future.")
        return when

    def _fate(self, account: SandboxAccount, phone: str) -> tuple[Fate, str | None]:
        if phone in account.opted_out:
            return "failed", self.config.opted_out_error_message
        if phone in self.config.undeliverable_numbers:
            return "failed", self.config.failed_error_message
        if self.config.failed_rate and self.random.random() < self.config.failed_rate:
            return "failed", self.config.failed_error_message
        return "delivered", None

    # --- reads ------------------------------------------------------------------------------

    def list_messages(self, account: SandboxAccount, query: dict[str, str]) -> dict[str, Any]:
        """`GET /sms` with `status`, `phone` (partial), `from`, `to`, `pageNumber`, `pageSize`."""
        page = _int(query, "pageNumber", 1)
        size = min(_int(query, "pageSize", 20), self.config.max_page_size)
        if page < 1 or size < 1:
            raise bad_request("pageNumber and pageSize must be positive.")
        status = (query.get("status") or "").lower()
        if status and status not in _FILTERS:
            raise bad_request(f"status must be one of {', '.join(_FILTERS)}.")
        phone = query.get("phone") or ""
        start = parse_time("from", query.get("from"))
        end = parse_time("to", query.get("to"))
        now = self.clock()
        found: list[SandboxMessage] = []
        for message in self.messages.values():
            if message.api_key != account.api_key:
                continue
            if status and message.status_at(now, self.config) not in _FILTERS[status]:
                continue
            if phone and phone not in message.phone and phone.lstrip("+") not in message.phone:
                continue
            if start is not None or end is not None:
                when = (
                    message.created_at
                    if self.config.date_filter == "createdAt"
                    else message.sent_at(now, self.config)
                )
                if when is None or (start is not None and when < start):
                    continue
                if end is not None and when > end:
                    continue
            found.append(message)
        found.sort(key=lambda m: (m.created_at, m.id), reverse=True)
        return paged([m.item(now, self.config) for m in found], page, size)

    def get_message(self, account: SandboxAccount, message_id: str) -> dict[str, Any]:
        message = self.messages.get(message_id)
        if message is None or message.api_key != account.api_key:
            raise not_found("SMS message not found.")
        return message.item(self.clock(), self.config)

    def cancel(self, account: SandboxAccount, message_id: str) -> None:
        """`DELETE /sms/{id}`: only a scheduled message; refunded."""
        message = self.messages.get(message_id)
        if (
            message is None
            or message.api_key != account.api_key
            or message.status_at(self.clock(), self.config) != "scheduled"
        ):
            raise not_found("SMS message not found or already sent.")
        del self.messages[message_id]
        account.balance = round(account.balance + message.cost, 2)

    def balance(self, account: SandboxAccount) -> dict[str, Any]:
        return {
            "balance": account.balance,
            "currency": "AOA",
            "lowBalanceThreshold": account.low_balance_threshold,
            "alertEmail": account.alert_email,
            "lastAlertSentAt": None,
        }


def _int(query: dict[str, str], name: str, default: int) -> int:
    value = query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"{name} must be an integer.") from None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _mask(api_key: str) -> str:
    return api_key[:8] + "…" + api_key[-4:]


__all__ = ["CastBrickSandbox", "SandboxError", "SandboxMessage", "SandboxStats"]
