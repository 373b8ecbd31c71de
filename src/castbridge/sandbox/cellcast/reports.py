"""The Cellcast sandbox's read endpoints: reports, account, token check, replies, opt-outs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from castbridge.sandbox.cellcast.config import SHARED_NUMBER, SandboxAccount
from castbridge.sandbox.cellcast.records import (
    SandboxBase,
    SandboxError,
    SandboxMessage,
    bad_request,
    international,
    iso,
    meta_envelope,
    national_without_zero,
    refusal,
)
from castbridge.sandbox.cellcast.sending import SHARED_SENDER

T = TypeVar("T")
# The list's status filter spells "delievered" (sic) and "canceled" with one l.
_STATUS_FILTER = {"delievered": "delivered"}


def is_object_id(value: str) -> bool:
    return len(value) == 24 and all(ch in "0123456789abcdefABCDEF" for ch in value)


def shown_sender(sender: str) -> str:
    """What reports and webhooks show as the sender: the shared number for #SharedNum#."""
    return SHARED_NUMBER if sender == SHARED_SENDER else sender


def cast_error(value: str) -> dict[str, Any]:
    """Mongoose's answer to a malformed ObjectId, as Cellcast passes it through."""
    return {
        "status": False,
        "message": "internal server error",
        "data": {},
        "error": {
            "stringValue": f'"{value}"',
            "valueType": "string",
            "kind": "ObjectId",
            "value": value,
            "path": "_id",
            "reason": {},
            "name": "CastError",
            "message": f'Cast to ObjectId failed for value "{value}" (type string) at path '
            '"_id" for model "gatewaymessage"',
        },
    }


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a number") from None
    if value < 1:
        raise bad_request(f"{name} must be at least 1")
    return value


def _date(params: Mapping[str, str], name: str) -> date | None:
    raw = params.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise bad_request(f"{name} must be in YYYY-MM-DD format") from None


def paging(items: Sequence[T], page: int, limit: int) -> tuple[list[T], dict[str, Any]]:
    total = len(items)
    pages = max(1, math.ceil(total / limit))
    chunk = list(items[(page - 1) * limit : page * limit])
    return chunk, {
        "total": total,
        "limit": limit,
        "current": page,
        "totalPages": pages,
        "hasPrevPage": page > 1,
        "hasNextPage": page < pages,
        "prevPage": page - 1 if page > 1 else None,
        "nextPage": page + 1 if page < pages else None,
    }


class ReportsMixin(SandboxBase):
    def _own(self, account: SandboxAccount, message_id: str) -> SandboxMessage | None:
        message = self.messages.get(message_id)
        if message is None or message.api_key != account.api_key:
            return None
        return message

    def report_detail(self, account: SandboxAccount, message_id: str) -> dict[str, Any]:
        """`GET /api/v2/report/message/{id}` in the configured body style."""
        if not is_object_id(message_id):
            raise SandboxError(self.config.cast_error_http_status, cast_error(message_id))
        message = self._own(account, message_id)
        if message is None:
            raise refusal("message not found", error={"error": "message not found"}, data={})
        now = self.clock()
        status = message.status_at(now, self.config)
        sent = message.send_time(now, self.config)
        core = {
            "_id": message.message_id,
            "status": status,
            "updatedAt": iso(message.updated_at(now, self.config)),
            "send_time": iso(sent) if sent is not None else None,
        }
        if self.config.report_body == "minimal":
            return {"data": core}
        data = {
            **core,
            "replyStop": message.reply_stop,
            "message": message.text,
            "sender": shown_sender(message.sender),
            "receiver": message.receiver,
            "smsDetail": {
                "messagelength": len(message.text),
                "smscount": message.parts,
                "deductibleCredit": message.credit,
            },
            "creditAmount": message.credit,
            "createdAt": iso(message.created_at),
            "scheduleAt": None,
            "customerResponse": None,
            "customerResponseAt": None,
            "customString": message.custom_string,
        }
        return {"status": True, "message": "Success", "data": data, "error": {}}

    def report_list(self, account: SandboxAccount, params: Mapping[str, str]) -> dict[str, Any]:
        """`GET /api/v2/report/message`: newest first, filtered by local day, status and
        customString; receivers in national form without the leading 0."""
        camp = params.get("campType")
        if camp not in ("sms", "mms"):
            raise refusal("campType is required", error={"campType": "campType is required"})
        page = _int(params, "page", 1)
        limit = min(_int(params, "limit", 10), self.config.list_max_limit)
        start, end = _date(params, "fromDate"), _date(params, "toDate")
        wanted_status = params.get("status") or None
        if wanted_status is not None:
            wanted_status = _STATUS_FILTER.get(wanted_status, wanted_status)
        custom = params.get("customString") or None
        now = self.clock()
        offset = timedelta(hours=self.config.report_utc_offset_hours)
        rows: list[SandboxMessage] = []
        for message in self.messages.values():
            if message.api_key != account.api_key or message.channel != "sms" or camp != "sms":
                continue
            local_day = (datetime.fromtimestamp(message.created_at, UTC) + offset).date()
            if (start is not None and local_day < start) or (end is not None and local_day > end):
                continue
            if custom is not None and message.custom_string != custom:
                continue
            if wanted_status is not None and message.status_at(now, self.config) != wanted_status:
                continue
            rows.append(message)
        rows.sort(key=lambda m: m.created_at, reverse=True)
        chunk, pages = paging(rows, page, limit)
        items = [self._row(message, now) for message in chunk]
        return {"status": True, "message": "Success", "data": {"items": items, **pages}}

    def _row(self, message: SandboxMessage, now: float) -> dict[str, Any]:
        row: dict[str, Any] = {
            "_id": message.message_id,
            "status": message.status_at(now, self.config),
            "message": message.text,
            "sender": shown_sender(message.sender),
            "receiver": national_without_zero(message.receiver),
            "scheduleAt": None,
            "createdAt": iso(message.created_at),
            "request_from": "API",
            "request_name": None,
            "creditAmount": message.credit,
            "gateway_count": 1,
            "smsDetail": {
                "messagelength": len(message.text),
                "smscount": message.parts,
                "costpersms": self.config.credit_per_part,
                "deductibleCredit": message.credit,
            },
            "replyStop": message.reply_stop,
            "replyMessage": None,
        }
        if self.config.list_custom_string:
            row["customString"] = message.custom_string
        return row

    def account_info(self, account: SandboxAccount) -> dict[str, Any]:
        return meta_envelope(
            {
                "account_name": account.account_name,
                "account_email": account.account_email,
                "sms_balance": account.sms_balance,
                "mms_balance": account.mms_balance,
            }
        )

    def token_verify(self, account: SandboxAccount) -> dict[str, Any]:
        # The answer's shape is not documented; a flat success envelope is the guess, and the
        # adapter requires nothing from its `data`.
        return {
            "status": True,
            "message": "Token is valid",
            "data": {"name": account.account_name, "email": account.account_email},
            "error": {},
        }

    def get_responses(self, account: SandboxAccount, page: int) -> dict[str, Any]:
        """`getResponses`: the account's replies, newest first."""
        replies = [r for r in self.replies if r.api_key == account.api_key]
        replies.sort(key=lambda r: (r.received_at, r.message_id), reverse=True)
        chunk, pages = paging(replies, page, self.config.responses_page_size)
        items = [
            {
                "message_id": reply.message_id,
                "from": reply.sender,
                "to": reply.receiver,
                "body": reply.text,
                "received_at": iso(reply.received_at),
                "original_message_id": reply.original.message_id if reply.original else None,
                "original_body": reply.original.text if reply.original else None,
            }
            for reply in chunk
        ]
        return meta_envelope(
            {"items": items, **pages}, status="SUCCESS", message="Responses fetched"
        )

    def get_optouts(self, account: SandboxAccount, page: int, size: int) -> dict[str, Any]:
        numbers = list(dict.fromkeys(international(n) for n in account.optouts))
        chunk, pages = paging(numbers, page, size)
        items = [
            {"number": n, "first_name": "", "last_name": "", "full_name": "", "email": ""}
            for n in chunk
        ]
        data = {"items": items, **pages, "pagingCounter": (page - 1) * size + 1}
        return {
            **meta_envelope(data, status="SUCCESS"),
            "message": f"You have {len(numbers)} optout contact(s)",
            "error": {},
        }

    def reply_receiver(self, original: SandboxMessage | None) -> str:
        """The number a reply was sent to: the original's number sender, else the shared one."""
        if original is not None and original.sender.isdigit():
            return original.sender
        return SHARED_NUMBER
