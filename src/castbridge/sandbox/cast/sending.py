"""The Cast sandbox's send endpoints: validation, sender IDs, credits, messages, bulk."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

from castbridge.sandbox.cast.config import SandboxAccount, canonical_number, is_test_key
from castbridge.sandbox.cast.core import (
    Fate,
    SandboxBase,
    SandboxError,
    SandboxMessage,
    invalid,
    iso,
)
from castbridge.sms.text import segments

TO_PATTERN = re.compile(r"^[0-9+()\-]{7,20}$")
MAX_BULK = 1000
# Rev B does not list an error_code for sender-ID refusals (gateways.md §1.6); these are ours,
# and castbridge's client recognises the sentences whatever code Cast really uses.
SENDER_ID_NOT_ALLOWED = "SENDER_ID_NOT_ALLOWED"
NO_SENDER_IDS = "NO_SENDER_IDS"
# Also undocumented: what a send to an opted-out number answers. Ours: 403 with this code.
RECIPIENT_UNSUBSCRIBED = "RECIPIENT_UNSUBSCRIBED"


class SendingMixin(SandboxBase):
    def _check_channel(self, account: SandboxAccount, channel: str, bulk: bool) -> None:
        needed = "sim" if channel == "sim" else ("bulk" if bulk else channel)
        if needed not in account.allowed_channels:
            raise SandboxError(
                403, "CHANNEL_NOT_ALLOWED", f"{needed} channel not enabled for this account"
            )
        if channel == "sim" and not self.config.sim_service_enabled:
            raise SandboxError(503, "SERVICE_UNAVAILABLE", "sim service is disabled")

    def _check_fields(self, body: dict[str, Any], channel: str, bulk: bool) -> dict[str, Any]:
        """Validate the body; returns {to, message, sender_id, scheduled_at}."""
        to = body.get("to")
        if to is None or to == "" or to == []:
            raise invalid("to is required")
        if bulk:
            if not isinstance(to, list) or not all(isinstance(n, str) for n in to):
                raise invalid("to must be an array of phone numbers")
            if len(to) > MAX_BULK:
                raise invalid(f"to must contain 1-{MAX_BULK} numbers")
        elif not isinstance(to, str):
            raise invalid("to must be a string")
        elif not TO_PATTERN.match(to):
            raise invalid("to must be 7-20 characters (digits, +, (, ), -)")
        message = body.get("message")
        if message is None or message == "":
            raise invalid("message is required")
        if not isinstance(message, str):
            raise invalid("message must be a string")
        limit = self.config.max_message_chars
        if len(message) > limit:
            raise invalid(f"message is too long (max {limit} characters)")
        sender_id = body.get("sender_id")
        if sender_id is not None:
            if not isinstance(sender_id, str):
                raise invalid("sender_id must be a string")
            if len(sender_id) > self.config.max_sender_id_chars:
                raise invalid(
                    f"sender ID is too long (max {self.config.max_sender_id_chars} characters)"
                )
        scheduled_at = body.get("scheduled_at")
        when: datetime | None = None
        if scheduled_at is not None:
            if channel == "otp":
                raise invalid("scheduled_at is not supported for OTP")
            try:
                when = datetime.fromisoformat(str(scheduled_at))
            except ValueError:
                raise invalid("scheduled_at must be an ISO-8601 UTC timestamp") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            if when.timestamp() < self.clock() + 30:
                raise invalid("scheduled_at must be at least 30 seconds in the future")
        return {"to": to, "message": message, "sender_id": sender_id, "scheduled_at": when}

    def _sender(self, account: SandboxAccount, sender_id: str | None, channel: str) -> str:
        family = "sim" if channel == "sim" else "sms"
        approved = [s for s in account.sender_ids if s.channel == family]
        if sender_id is None:
            if not approved:
                raise SandboxError(403, NO_SENDER_IDS, "no sender IDs assigned to this user")
            return approved[0].sender_id  # Rev B: "defaults to first approved sender ID"
        if not any(s.sender_id == sender_id for s in approved):
            raise SandboxError(
                403, SENDER_ID_NOT_ALLOWED, f"sender_id '{sender_id}' is not allowed for this user"
            )
        return sender_id

    def _charge(self, account: SandboxAccount, credits: int) -> None:
        if account.billing_type == "postpaid":
            if account.credits - credits < -account.credit_limit:
                raise SandboxError(402, "CREDIT_LIMIT_REACHED", "credit limit reached")
        elif account.credits < credits:
            raise SandboxError(
                402,
                "INSUFFICIENT_CREDITS",
                f"insufficient credits: need {credits}, have {account.credits}",
            )
        account.credits -= credits

    def _fate(self, to: str) -> Fate:
        number = canonical_number(to)
        if number in {canonical_number(n) for n in self.config.failing_numbers}:
            return "failed"
        if number in {canonical_number(n) for n in self.config.undeliverable_numbers}:
            return "undelivered"
        roll = self.random.random()
        if roll < self.config.failed_rate:
            return "failed"
        if roll < self.config.failed_rate + self.config.undelivered_rate:
            return "undelivered"
        return "delivered"

    def _new_message(
        self,
        account: SandboxAccount,
        channel: str,
        to: str,
        sender_id: str,
        text: str,
        parts: int,
        idempotency_key: str | None,
    ) -> SandboxMessage:
        test = is_test_key(account.api_key)
        message_id = f"SANDBOX_{secrets.token_hex(8)}" if test else f"CAST{secrets.token_hex(6)}"
        message = SandboxMessage(
            message_id=message_id,
            api_key=account.api_key,
            channel=channel,
            to=to,
            sender_id=sender_id,
            text=text,
            parts=parts,
            created_at=self.clock(),
            fate=self._fate(to),
            sandbox=test,
            idempotency_key=idempotency_key,
        )
        self.messages[message_id] = message
        self.stats.messages += 1
        if not test and message.fate == "failed":
            account.credits += parts  # a failed submission is refunded (gateways.md §1.7)
        return message

    def _record_send(self, account: SandboxAccount, key: str | None, credits: int) -> None:
        self.stats.sends += 1
        if key is None:
            self.stats.unkeyed_sends += 1
        elif not is_test_key(account.api_key):
            self.stats.billed[(account.api_key, key)] += 1
            self.stats.credits_charged[(account.api_key, key)] += credits

    def send(
        self, account: SandboxAccount, channel: str, body: dict[str, Any], key: str | None
    ) -> tuple[int, dict[str, Any]]:
        """POST /{sms,otp,sim}/send: (HTTP status, body) or SandboxError."""
        self._check_channel(account, channel, bulk=False)
        fields = self._check_fields(body, channel, bulk=False)
        sender_id = self._sender(account, fields["sender_id"], channel)
        if self._blocked(account, fields["to"], sender_id):
            raise SandboxError(
                403, RECIPIENT_UNSUBSCRIBED, "recipient has unsubscribed from this sender"
            )
        parts = segments(fields["message"]).count
        test = is_test_key(account.api_key)
        if fields["scheduled_at"] is not None:
            return self._schedule(account, channel, fields, sender_id, count=None)
        self.check_account_rate(account, 1)
        if not test:
            self._charge(account, parts)
        message = self._new_message(
            account, channel, fields["to"], sender_id, fields["message"], parts, key
        )
        self._record_send(account, key, 0 if test or message.fate == "failed" else parts)
        answer: dict[str, Any] = {"success": True, "message_id": message.message_id, "parts": parts}
        if test:
            answer["sandbox"] = True
        return 200, answer

    def bulk(
        self, account: SandboxAccount, channel: str, body: dict[str, Any], key: str | None
    ) -> tuple[int, dict[str, Any]]:
        """POST /{sms,sim}/bulk: credits reserved for the batch, refunded per failed entry."""
        self._check_channel(account, channel, bulk=True)
        fields = self._check_fields(body, channel, bulk=True)
        sender_id = self._sender(account, fields["sender_id"], channel)
        numbers: list[str] = fields["to"]
        parts = segments(fields["message"]).count
        test = is_test_key(account.api_key)
        if fields["scheduled_at"] is not None:
            return self._schedule(account, channel, fields, sender_id, count=len(numbers))
        # Metered after validation: only messages actually attempted count (a bulk as N).
        self.check_account_rate(account, len(numbers))
        if not test:
            self._charge(account, parts * len(numbers))
        results: list[dict[str, Any]] = []
        charged = 0
        for number in numbers:
            if not TO_PATTERN.match(number):
                error = "to must be 7-20 characters (digits, +, (, ), -)"
            elif self._blocked(account, number, sender_id):
                error = "recipient has unsubscribed from this sender"
            else:
                message = self._new_message(
                    account, channel, number, sender_id, fields["message"], parts, key
                )
                results.append(
                    {
                        "to": number,
                        "success": True,
                        "message_id": message.message_id,
                        "parts": parts,
                    }
                )
                charged += 0 if test or message.fate == "failed" else parts
                continue
            if not test:
                account.credits += parts
            results.append({"to": number, "success": False, "error": error})
        sent = sum(1 for r in results if r["success"])
        self._record_send(account, key, charged)
        answer: dict[str, Any] = {
            "success": sent == len(numbers),
            "total": len(numbers),
            "sent": sent,
            "failed": len(numbers) - sent,
            "results": results,
        }
        if test:
            answer["sandbox"] = True
        return 200, answer

    def _schedule(
        self,
        account: SandboxAccount,
        channel: str,
        fields: dict[str, Any],
        sender_id: str,
        count: int | None,
    ) -> tuple[int, dict[str, Any]]:
        """Scheduled sends are recorded (202, no message_id) but never dispatched here."""
        when = iso(fields["scheduled_at"].timestamp())
        self.scheduled.append(
            {
                "api_key": account.api_key,
                "channel": channel,
                "to": fields["to"],
                "sender_id": sender_id,
                "scheduled_at": when,
            }
        )
        if count is None:
            return 202, {"success": True, "scheduled_at": when}
        return 202, {"success": True, "scheduled": count, "scheduled_at": when}
