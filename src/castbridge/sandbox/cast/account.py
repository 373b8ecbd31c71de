"""The Cast sandbox's read endpoints: status, account, usage, logs, opt-outs, sender IDs."""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

from castbridge.sandbox.cast.config import SandboxAccount
from castbridge.sandbox.cast.core import SandboxBase, SandboxError, SandboxMessage, invalid, iso


class AccountMixin(SandboxBase):
    # --- reads ----------------------------------------------------------------------------

    def status(self, account: SandboxAccount, family: str, message_id: str) -> dict[str, Any]:
        message = self.messages.get(message_id)
        if (
            message is None
            or message.api_key != account.api_key
            or (family == "sim") != (message.channel == "sim")
            or (message.sandbox and not self.config.test_ids_pollable)
        ):
            raise SandboxError(404, "NOT_FOUND", "message not found")
        return {
            "success": True,
            "message_id": message_id,
            **message.status_at(self.clock(), self.config),
        }

    def balance(self, account: SandboxAccount) -> dict[str, Any]:
        return {"success": True, "credits": account.credits, "currency": "PHP"}

    def profile(self, account: SandboxAccount) -> dict[str, Any]:
        return {
            "success": True,
            "id": account.id,
            "name": account.name,
            "email": account.email,
            "mobile": account.mobile,
            "username": account.username,
            "credits": account.credits,
            "billing_type": account.billing_type,
            "allowed_channels": list(account.allowed_channels),
            "is_active": account.is_active,
            "created_at": account.created_at.isoformat().replace("+00:00", "Z"),
        }

    def sender_ids(self, account: SandboxAccount) -> dict[str, Any]:
        return {
            "success": True,
            "sender_ids": [s.model_dump() for s in account.sender_ids],
        }

    def _own_messages(self, account: SandboxAccount) -> list[SandboxMessage]:
        return [m for m in self.messages.values() if m.api_key == account.api_key]

    def usage(self, account: SandboxAccount, start: date, end: date) -> dict[str, Any]:
        now = self.clock()
        daily: dict[date, Counter[str]] = {}
        for m in self._own_messages(account):
            day = datetime.fromtimestamp(m.created_at, UTC).date()
            if not start <= day <= end:
                continue
            c = daily.setdefault(day, Counter())
            c["total"] += 1
            c["failed" if m.log_status(now, self.config) == "failed" else "sent"] += 1
            c["parts"] += m.parts
        rows = [
            {
                "date": d.isoformat(),
                "total": c["total"],
                "sent": c["sent"],
                "failed": c["failed"],
                "parts": c["parts"],
            }
            for d, c in sorted(daily.items(), reverse=True)
        ]
        return {
            "success": True,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "total": sum(r["total"] for r in rows),
            "total_sent": sum(r["sent"] for r in rows),
            "total_failed": sum(r["failed"] for r in rows),
            "total_parts": sum(r["parts"] for r in rows),
            "daily": rows,
        }

    def logs(
        self,
        account: SandboxAccount,
        *,
        status: str | None,
        search: str | None,
        start: date | None,
        end: date | None,
        limit: int,
        offset: int,
    ) -> dict[str, Any]:
        if status not in (None, "", "sent", "failed"):
            raise invalid("status must be sent or failed")
        if not 1 <= limit <= 500:
            raise invalid("limit must be 1-500")
        now = self.clock()
        rows: list[dict[str, Any]] = []
        messages = sorted(self._own_messages(account), key=lambda m: m.created_at, reverse=True)
        for index, m in enumerate(messages):
            day = datetime.fromtimestamp(m.created_at, UTC).date()
            log_status = m.log_status(now, self.config)
            if status and log_status != status:
                continue
            if search and search not in m.to and search not in m.text:
                continue
            if (start and day < start) or (end and day > end):
                continue
            current = m.status_at(now, self.config)
            row: dict[str, Any] = {
                "id": len(messages) - index,
                "message_type": m.channel,
                "sender_id": m.sender_id,
                "destination": m.to,
                "message": m.text,
                "smpp_message_id": m.message_id,
                "status": log_status,
                "parts": m.parts,
                "created_at": iso(m.created_at),
            }
            for extra in ("dlr_status", "delivered_at"):
                if extra in current:
                    row[extra] = current[extra]
            rows.append(row)
        page = rows[offset : offset + limit]
        return {"success": True, "count": len(page), "logs": page}

    def unsubscribe_token(self, account: SandboxAccount, body: dict[str, Any]) -> dict[str, Any]:
        phone, sender_id = body.get("phone"), body.get("sender_id")
        if not isinstance(phone, str) or not phone:
            raise invalid("phone is required")
        if not isinstance(sender_id, str) or not sender_id:
            raise invalid("sender_id is required")
        if self._blocked(account, phone, sender_id):
            raise SandboxError(422, "ALREADY_UNSUBSCRIBED", "number is already unsubscribed")
        expires = iso(self.clock() + 7 * 86400)
        return {
            "success": True,
            "link": f"u.cast.ph/{secrets.token_urlsafe(12)}",
            "expires_at": expires,
        }

    def unsubscribed(self, account: SandboxAccount) -> dict[str, Any]:
        return {"success": True, "data": [u.model_dump(mode="json") for u in account.unsubscribed]}

    def sender_id_request(self, body: dict[str, Any], *, delete: bool) -> dict[str, Any]:
        sender_id = body.get("sender_id")
        if not isinstance(sender_id, str) or not sender_id:
            raise invalid("sender_id is required")
        if len(sender_id) > 20:
            raise invalid("sender ID is too long (max 20 characters)")
        required = ("reason",) if delete else ("company_name", "reason")
        for name in required:
            if not isinstance(body.get(name), str) or not body[name]:
                raise invalid(f"{name} is required")
        return {
            "success": True,
            "request_id": secrets.randbelow(10**6),
            "status": "pending_review",
            "message": "Your request has been submitted for review.",
        }
