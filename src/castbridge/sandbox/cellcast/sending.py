"""The Cellcast sandbox's send endpoints: `/api/v1/gateway` and `/api/v1/chat`."""

from __future__ import annotations

import re
from typing import Any

from castbridge.sandbox.cellcast.config import SandboxAccount
from castbridge.sandbox.cellcast.records import (
    CONTACT_FORMS,
    CONTACTS_MESSAGE,
    SandboxBase,
    SandboxMessage,
    app_envelope,
    bad_request,
    canonical_text,
    international,
    refusal,
)
from castbridge.sms.phone import InvalidNumber, normalize
from castbridge.sms.text import segments

SHARED_SENDER = "#SharedNum#"
MAX_CONTACTS = 1000
SENDER_CHARS = re.compile(r"^[A-Za-z0-9 -]+$")
CUSTOM_STRING = re.compile(r"^[A-Za-z0-9-]+$")
UNSUBSCRIBED_MESSAGE = "Contact is Unsubscribed and can not receive messages"
SENDER_NOT_REGISTERED = "Your sender id is not registered."


def valid_mobile(number: str) -> bool:
    try:
        normalize("+" + number, "AU")
    except InvalidNumber:
        return False
    return True


def is_two_way(sender: str) -> bool:
    """Replies come back to the shared number and to numbers, never to an alphanumeric ID."""
    return sender == SHARED_SENDER or sender.isdigit()


class SendingMixin(SandboxBase):
    def _country(self, value: Any) -> None:
        if value is None or value == "":
            raise bad_request("countryCode is required")
        if value not in (61, "61"):
            raise bad_request("countryCode must be 61")

    def _sender(self, account: SandboxAccount, raw: Any) -> str:
        if raw is None or raw == "":
            return SHARED_SENDER
        if not isinstance(raw, str):
            raise bad_request("sender must be a string")
        if raw == SHARED_SENDER:
            return raw
        too_long = len(raw) > (16 if raw.isdigit() else 11)
        if not SENDER_CHARS.match(raw) or too_long:
            raise bad_request(
                "sender: valid characters are A-Z a-z 0-9, space and dash; at most 11 "
                "characters, or 16 digits"
            )
        if raw not in account.senders:
            raise refusal(
                SENDER_NOT_REGISTERED,
                status=self.config.refused_sender_http_status,
                error={"sender": SENDER_NOT_REGISTERED},
                data=[],
            )
        return raw

    def _numbers(self, raw: Any, name: str) -> list[str]:
        if not isinstance(raw, list) or not raw:
            raise bad_request(f"{name} is required and must be an array")
        if len(raw) > MAX_CONTACTS:
            raise bad_request(f"{name} can have at most {MAX_CONTACTS} numbers")
        for contact in raw:
            if not isinstance(contact, str) or not CONTACT_FORMS.match(contact.strip()):
                raise bad_request(CONTACTS_MESSAGE)
        return [contact.strip() for contact in raw]

    def _charge(self, account: SandboxAccount, cost: float) -> None:
        if cost > account.sms_balance + 1e-9:
            raise refusal(
                "Insufficient balance",
                status=self.config.low_balance_http_status,
                error={
                    "errorMessage": "You don't have enough balance to send this message. "
                    "Please top up your account."
                },
            )
        account.sms_balance = round(account.sms_balance - cost, 4)

    def _fate(self, number: str) -> str:
        if number in {international(n) for n in self.config.undeliverable_numbers}:
            return self.config.undeliverable_status
        if self.config.failed_rate and self.random.random() < self.config.failed_rate:
            return "failed"
        return "delivered"

    def _create(
        self,
        account: SandboxAccount,
        channel: str,
        number: str,
        sender: str,
        text: str,
        custom_string: str | None,
        parts: int,
        credit: float,
        *,
        reply_stop: bool = False,
        scheduled: bool = False,
    ) -> SandboxMessage:
        message = SandboxMessage(
            message_id=self.new_id(),
            api_key=account.api_key,
            channel=channel,
            receiver=number,
            sender=sender,
            text=text,
            custom_string=custom_string,
            parts=parts,
            credit=credit,
            created_at=self.clock(),
            fate=self._fate(number),
            reply_stop=reply_stop,
            scheduled=scheduled,
        )
        self.messages[message.message_id] = message
        self.stats.messages += 1
        if custom_string is not None:
            self.stats.billed_refs[(account.api_key, custom_string)] += 1
        self.stats.billed_texts[(account.api_key, number, canonical_text(text))] += 1
        return message

    def _split(
        self, account: SandboxAccount, contacts: list[str]
    ) -> tuple[list[tuple[str, str]], list[str], list[str]]:
        """(sendable (contact, 61…) pairs, invalid contacts, unsubscribed contacts); a refusal
        when the account answers opt-outs by refusing the whole request."""
        optouts = {international(n) for n in account.optouts}
        refused = {international(n) for n in self.config.invalid_numbers}
        sendable: list[tuple[str, str]] = []
        invalid: list[str] = []
        unsubscribed: list[str] = []
        for contact in contacts:
            number = international(contact)
            if number in optouts:
                unsubscribed.append(contact)
            elif number in refused or not valid_mobile(number):
                invalid.append(contact)
            else:
                sendable.append((contact, number))
        if unsubscribed and self.config.optout_answer == "refusal":
            raise refusal(UNSUBSCRIBED_MESSAGE)
        return sendable, invalid, unsubscribed

    def _per_part(self, sender: str) -> float:
        if sender == SHARED_SENDER:
            return self.config.credit_per_part
        return self.config.custom_sender_credit

    def send_gateway(self, account: SandboxAccount, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /api/v1/gateway`: validate, refuse or queue, charge, answer per recipient."""
        text = body.get("message")
        if not isinstance(text, str) or not text:
            raise bad_request("message is required")
        contacts = self._numbers(body.get("contacts"), "contacts")
        self._country(body.get("countryCode"))
        sender = self._sender(account, body.get("sender"))
        custom = body.get("customString")
        if custom is not None and (not isinstance(custom, str) or not CUSTOM_STRING.match(custom)):
            raise bad_request("customString may contain only letters, digits and dashes")
        scheduled = body.get("scheduleAt") not in (None, "") or body.get("delay") not in (
            None,
            "",
            0,
        )
        sendable, invalid, unsubscribed = self._split(account, contacts)
        no_id = {international(n) for n in self.config.no_id_numbers}
        billable = [pair for pair in sendable if pair[1] not in no_id]
        parts = segments(text).count
        per_message = round(parts * self._per_part(sender), 4)
        self._charge(account, per_message * len(billable))
        queue: list[dict[str, Any]] = []
        for contact, number in sendable:
            if number in no_id:
                queue.append(
                    {
                        "Contact": contact,
                        "MessageId": None,
                        "Result": "Message could not be queued.",
                        "Number": number,
                    }
                )
                continue
            message = self._create(
                account,
                "sms",
                number,
                sender,
                text,
                custom,
                parts,
                per_message,
                reply_stop=body.get("replyStopToOptOut") is True,
                scheduled=scheduled,
            )
            queue.append(
                {
                    "Contact": contact,
                    "MessageId": message.message_id,
                    "Result": "Message added to queue.",
                    "Number": number,
                }
            )
        self.stats.sends += 1
        if scheduled:
            self.stats.scheduled_requests += 1
        return app_envelope(
            "SMS sent successfully",
            {
                "queueResponse": queue,
                "invalidContacts": invalid,
                "unsubscribeContacts": unsubscribed,
                "totalValidContact": len(sendable),
                "totalInvalidContact": len(invalid),
                "totalUnsubscribeContact": len(unsubscribed),
            },
        )

    def send_chat(self, account: SandboxAccount, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /api/v1/chat` (seeds/003): answers only `{number, message}` per recipient."""
        text = body.get("message")
        if not isinstance(text, str) or not text:
            raise bad_request("message is required")
        numbers = self._numbers(body.get("number"), "number")
        for name in ("smsTemplateId", "rmsTemplateId"):
            value = body.get(name)
            if not isinstance(value, str) or not value:
                raise bad_request(f"{name} is required")
        self._country(body.get("countryCode"))
        sender = self._sender(account, body.get("sender"))
        sendable, _invalid, _unsubscribed = self._split(account, numbers)
        parts = segments(text).count
        per_message = round(parts * self._per_part(sender), 4)
        self._charge(account, per_message * len(sendable))
        for _contact, number in sendable:
            self._create(account, "chat", number, sender, text, None, parts, per_message)
        self.stats.sends += 1
        return app_envelope(
            "Chat message(s) sent successfully",
            [{"number": number, "message": text} for _contact, number in sendable],
        )
