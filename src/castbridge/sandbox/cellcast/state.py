"""The Cellcast sandbox's state and rules: accounts, auth, limits, webhooks, emitters, statistics.

Pure logic with no routes: `castbridge.sandbox.cellcast.app` turns requests into calls here,
and tests read the same object as `app.state.sandbox`.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp

from castbridge.sandbox.cellcast.config import (
    CellcastSandboxConfig,
    Faults,
    SandboxAccount,
)
from castbridge.sandbox.cellcast.records import (
    CONTACT_FORMS,
    CellcastStats,
    SandboxError,
    SandboxMessage,
    SandboxReply,
    canonical_text,
    international,
    token_expired,
)
from castbridge.sandbox.cellcast.reports import ReportsMixin, shown_sender
from castbridge.sandbox.cellcast.sending import SendingMixin, is_two_way
from castbridge.sandbox.kit import DebtBucket, FaultStats, SandboxClock, WebhookPusher

# What Cellcast itself treats as an opt-out reply when `replyStopToOptOut` was set.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT"})
SEND_PATHS = frozenset({"/api/v1/gateway", "/api/v1/chat"})


class CellcastSandbox(SendingMixin, ReportsMixin):
    """A faithful local Cellcast (new API, gateways.md §3) with inspectable state."""

    def __init__(
        self, config: CellcastSandboxConfig | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config if config is not None else CellcastSandboxConfig()
        self.clock: Callable[[], float] = clock if clock is not None else SandboxClock()
        self.accounts: dict[str, SandboxAccount] = {a.api_key: a for a in self.config.accounts}
        self.messages: dict[str, SandboxMessage] = {}
        self.replies: list[SandboxReply] = []
        self.stats = CellcastStats()
        self.random = random.Random(self.config.seed)
        self.pusher = WebhookPusher(
            attempts=self.config.push_attempts, retry_delay=self.config.push_retry_delay
        )
        self._buckets: dict[str, DebtBucket] = {}

    # --- the kit's fault middleware and admin router ask these ------------------------------

    @property
    def faults(self) -> Faults:
        return self.config.faults

    def set_faults(self, faults: Faults) -> None:
        self.config.faults = faults

    @property
    def fault_stats(self) -> FaultStats:
        return self.stats

    def is_api_request(self, method: str, path: str) -> bool:
        return path.startswith("/api/")

    def is_send_request(self, method: str, path: str) -> bool:
        return method == "POST" and path.rstrip("/") in SEND_PATHS

    def error_app(self, status: int) -> ASGIApp:
        from castbridge.sandbox.cellcast.http import error_response

        if status == 429:
            return error_response(self.rate_limited(count=False))
        message = "internal server error" if status >= 500 else "injected fault"
        return error_response(
            SandboxError(
                status,
                {"status": False, "message": message, "data": {}, "error": {"message": message}},
            )
        )

    def admit(self, client_ip: str) -> ASGIApp | None:
        return None  # Cellcast limits per key, not per IP

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock and push whatever webhooks became due."""
        advance = getattr(self.clock, "advance", None)
        if advance is None:
            raise TypeError("this sandbox's clock cannot be advanced")
        advance(seconds)
        self.pump()

    def reset_stats(self) -> None:
        self.stats = CellcastStats()

    # --- accounts, auth and limits ----------------------------------------------------------

    def account(self, api_key: str) -> SandboxAccount:
        return self.accounts[api_key]

    def add_account(self, account: SandboxAccount) -> SandboxAccount:
        self.accounts[account.api_key] = account
        self._buckets.pop(account.api_key, None)
        return account

    def authenticate(self, authorization: str | None) -> SandboxAccount:
        """`Authorization: Bearer <key>`; every refusal is Cellcast's 401 "Token expired"."""
        scheme, _, key = (authorization or "").partition(" ")
        account = self.accounts.get(key.strip()) if scheme.lower() == "bearer" else None
        if account is None or account.token_expired:
            raise token_expired()
        self._check_rate(account)
        return account

    def rate_limited(self, *, count: bool = True) -> SandboxError:
        # The new API's 429 body is not documented; the adapter relies only on the status and
        # Retry-After.
        if count:
            self.stats.rate_limited += 1
        return SandboxError(
            429,
            {"status": False, "message": "Too many requests", "data": [], "error": {}},
            {"Retry-After": str(self.config.retry_after_seconds)},
        )

    def _check_rate(self, account: SandboxAccount) -> None:
        bucket = self._buckets.get(account.api_key)
        if bucket is None or bucket.rate != account.rate_limit:
            bucket = self._buckets[account.api_key] = DebtBucket(
                account.rate_limit, account.rate_limit
            )
        if not bucket.take(1):
            raise self.rate_limited()

    # --- webhooks -------------------------------------------------------------------------

    def set_webhooks(self, api_key: str, status_url: str | None, receive_url: str | None) -> None:
        """What a person does in the dashboard: set (or clear) both webhook URLs."""
        account = self.accounts[api_key]
        account.status_url = status_url or None
        account.receive_url = receive_url or None

    def pump(self) -> int:
        """Push a Status URL report for every message that reached its final status; returns
        how many were scheduled. Runs on every request, on `advance()` and on a timer."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return 0  # no loop to post from: the next pump pushes them
        now = self.clock()
        scheduled = 0
        for message in self.messages.values():
            final_at = message.final_at(self.config)
            if message.pushed or message.channel != "sms" or final_at is None or final_at > now:
                continue
            message.pushed = True
            account = self.accounts.get(message.api_key)
            url = account.status_url if account is not None else None
            body = {
                "_id": message.message_id,
                "status": message.fate,
                "type": "send",
                "sender": shown_sender(message.sender),
                "receiver": message.receiver,
            }
            if self.pusher.schedule(url, body) is not None:
                self.stats.pushes += 1
                scheduled += 1
        return scheduled

    # --- emitters (two-way) ---------------------------------------------------------------

    def emit_reply(
        self, api_key: str, from_number: str, text: str, *, to: str | None = None
    ) -> dict[str, Any]:
        """A handset replies. It reaches Cellcast only if the message it answers came from the
        shared number or a number (an alphanumeric sender is one-way); then it is kept for
        `getResponses` and pushed to the Receive URL in the configured field style."""
        account = self.accounts[api_key]
        if not CONTACT_FORMS.match(from_number.strip()):
            raise ValueError("from must be an Australian mobile in an accepted form")
        sender = international(from_number.strip())
        sent = [
            m
            for m in self.messages.values()
            if m.api_key == api_key and m.receiver == sender and m.channel == "sms"
        ]
        original = max(sent, key=lambda m: m.created_at) if sent else None
        if original is not None and not is_two_way(original.sender):
            self.stats.dropped_replies += 1
            return {
                "delivered": False,
                "reason": "the message was sent from an alphanumeric sender ID, which is one-way",
            }
        receiver = international(to) if to else self.reply_receiver(original)
        reply = SandboxReply(
            message_id=self.new_id(),
            api_key=api_key,
            sender=sender,
            receiver=receiver,
            text=text,
            received_at=self.clock(),
            original=original,
        )
        self.replies.append(reply)
        self.stats.replies += 1
        if original is not None and original.reply_stop and text.strip().upper() in STOP_WORDS:
            self.emit_optout(api_key, sender)
        if self.config.reply_field == "reply":
            body: dict[str, Any] = {
                "sender": sender,
                "reply": text,
                "message": original.text if original is not None else "",
                "receiver": receiver,
            }
        else:
            body = {
                "_id": reply.message_id,
                "status": "received",
                "type": "receive",
                "message": text,
                "sender": sender,
                "receiver": receiver,
            }
        pushed = self.pusher.schedule(account.receive_url, body) is not None
        if pushed:
            self.stats.pushes += 1
        return {"delivered": True, "message_id": reply.message_id, "pushed": pushed}

    def emit_optout(self, api_key: str, number: str, *, opted_in: bool = False) -> None:
        """The number opts out of (or back into) this account, as through Cellcast's own
        opt-out link or a STOP reply Cellcast handled. Cellcast pushes nothing for it; it shows
        in `getOptout` and later sends to the number are refused."""
        account = self.accounts[api_key]
        target = international(number.strip())
        kept = [n for n in account.optouts if international(n) != target]
        account.optouts = kept if opted_in else [*kept, target]

    # --- counters for tests ---------------------------------------------------------------

    def billed(self, custom_string: str, api_key: str | None = None) -> int:
        """How many messages carrying `custom_string` were created and charged."""
        return sum(
            n
            for (key, ref), n in self.stats.billed_refs.items()
            if ref == custom_string and (api_key is None or key == api_key)
        )

    def billed_to(self, number: str, text: str, api_key: str | None = None) -> int:
        """How many messages with `text` were created and charged to `number` (any form)."""
        target, wanted = international(number.strip()), canonical_text(text)
        return sum(
            n
            for (key, to, body), n in self.stats.billed_texts.items()
            if to == target and body == wanted and (api_key is None or key == api_key)
        )

    def status_of(self, message_id: str) -> str:
        return self.messages[message_id].status_at(self.clock(), self.config)

    def snapshot(self) -> dict[str, Any]:
        """The `GET /_sandbox/stats` body."""
        now = self.clock()
        by_status = Counter(m.status_at(now, self.config) for m in self.messages.values())
        refs: Counter[str] = Counter()
        for (_, ref), n in self.stats.billed_refs.items():
            refs[ref] += n
        return {
            **self.stats.snapshot(),
            "sends": self.stats.sends,
            "messages": self.stats.messages,
            "rate_limited_429": self.stats.rate_limited,
            "scheduled_requests": self.stats.scheduled_requests,
            "billed_refs": dict(refs),
            "billed_texts": sum(self.stats.billed_texts.values()),
            "max_billed_per_text": max(self.stats.billed_texts.values(), default=0),
            "pushes": self.stats.pushes,
            "replies": self.stats.replies,
            "dropped_replies": self.stats.dropped_replies,
            "messages_by_status": dict(by_status),
            "balances": {_mask(k): a.sms_balance for k, a in self.accounts.items()},
        }


def _mask(api_key: str) -> str:
    return api_key[:6] + "…" + api_key[-4:]


__all__ = ["STOP_WORDS", "CellcastSandbox"]
