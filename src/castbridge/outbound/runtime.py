"""What the outbound handlers work with: their services, a claimed job's context, and the
transitions every handler ends messages with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from castbridge import metrics
from castbridge.config import Settings
from castbridge.gateways.base import SendRequest
from castbridge.gateways.directory import GatewayDirectory
from castbridge.ghl.client import GHLClient
from castbridge.outbound.builders import error_body
from castbridge.secrets import PhoneVault, SecretBox
from castbridge.store.db import Store
from castbridge.store.jobs import AttemptRecord, ClaimedJob, Transition
from castbridge.store.messages import SENDABLE
from castbridge.store.models import GatewayAccount, Message, OptOut

# Message statuses from which a send may still finish the message.
OPEN = frozenset({*SENDABLE, "accepted"})
FINAL_GHL = frozenset({"delivered", "failed"})


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class MessageContext:
    """A claimed message job with what it needs, loaded in one statement per batch."""

    message: Message
    account: GatewayAccount | None
    install_state: str | None
    opt_out: OptOut | None = None  # the number opted out of this location's SMS


@dataclass(slots=True)
class Runtime:
    settings: Settings
    store: Store
    gateways: GatewayDirectory  # paces through a pacer that refuses (Throttled), never waits
    ghl: GHLClient  # the same
    vault: PhoneVault
    box: SecretBox
    worker_id: str
    # The same HighLevel client waiting for tokens (bounded), for jobs that make several calls
    # in a row (a reply: contact, conversation, add): refusing mid-way would restart them from
    # their first call and, under load, never let them finish.
    ghl_waiting: GHLClient | None = None

    @property
    def ghl_in_a_row(self) -> GHLClient:
        return self.ghl_waiting or self.ghl

    def reference(self, message: Message, generation: int = 0) -> str:
        """The message's stable key at the gateway, namespaced by location: HighLevel's UI
        "retry" makes a new messageId, so a new key and rightly a new send (ghl.md §2).

        `generation` moves on only after the gateway refused the message outright (no credits,
        key revoked): nothing was sent, and the gateway may cache that refusal under the key
        for 24 h (gateways.md §1.5), so the send after the account resumes needs a fresh key.
        """
        base = f"{message.location_id}:{message.ghl_message_id}"
        return base if generation <= 0 else f"{base}:{generation}"

    def send_request(
        self, message: Message, default_channel: str, generation: int = 0
    ) -> SendRequest:
        return SendRequest(
            to_e164=self.vault.open(message.phone_enc),
            text=message.text,
            reference=self.reference(message, generation),
            sender_id=message.sender_id,
            channel=message.channel or default_channel,
        )

    def report_at(self, message: Message) -> datetime:
        earliest = message.created_at + timedelta(
            seconds=self.settings.report_initial_delay_seconds
        )
        return max(utcnow(), earliest)


def to_report(
    rt: Runtime,
    message: Message,
    status: str,
    *,
    code: str | None = None,
    text: str | None = None,
    values: dict[str, Any] | None = None,
    attempt: AttemptRecord | None = None,
    if_status: frozenset[str] | None = OPEN,
    installed: bool = True,
) -> Transition:
    """End the message at `status` and turn the job into its HighLevel report (forward-only:
    nothing happens if the message already left `if_status`). Without a token (the location
    is not installed) there is nothing to report with: the message ends locally."""
    final = dict(values or {})
    final.setdefault("status", status)
    if text is not None:
        final.setdefault("error_message", text)
        final.setdefault("error_code", code)
    metrics.MESSAGES_FINAL.labels(str(final["status"])).inc()
    if not installed:
        return Transition(fate="done", message=final, message_if_status=if_status, attempt=attempt)
    payload: dict[str, Any] = {"status": status}
    if text is not None:
        payload["error"] = error_body(code, text)
    if message.force_report:
        payload["force"] = True
    return Transition(
        fate="next",
        kind="report",
        lane="report",
        run_at=rt.report_at(message),
        payload=payload,
        message=final,
        message_if_status=if_status,
        attempt=attempt,
    )


def installed(state: str | None) -> bool:
    """The location holds a token HighLevel will accept a report with (or may again soon)."""
    return state in {"active", "paused", "needs_reinstall"}


def later(job: ClaimedJob, seconds: float, *, count: bool = True, **fields: Any) -> Transition:
    return Transition(
        fate="retry",
        run_at=utcnow() + timedelta(seconds=max(0.0, seconds)),
        count_attempt=count,
        **fields,
    )
