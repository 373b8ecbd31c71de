"""The domain: what a send, a status poll and a status report job do, and what outcomes mean."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from castbridge import metrics
from castbridge.config import Settings
from castbridge.gateways.base import (
    DeliveryStatus,
    Gateway,
    GatewayError,
    NotFoundError,
    SendRequest,
)
from castbridge.logging import get_logger
from castbridge.store import repository as repo
from castbridge.store.models import Message
from castbridge.store.repository import ClaimedJob

log = get_logger(__name__)

TERMINAL_GHL = frozenset({"delivered", "failed"})
# Send-job payload flag: an earlier try may have been accepted by the gateway.
MAYBE_SENT = "maybe_sent"
POLL_NOT_FOUND_LIMIT = 5


class NoGatewayAccount(Exception):
    """No Cast API key for this location and no default one configured."""


@dataclass(frozen=True, slots=True)
class GatewayAccount:
    gateway: Gateway
    sender_id: str | None
    channel: str


class GatewayResolver(Protocol):
    async def for_location(self, session: AsyncSession, location_id: str) -> GatewayAccount: ...


class StatusReporter(Protocol):
    """HighLevel's status update, as the HighLevel client provides it."""

    async def update_message_status(
        self,
        location_id: str,
        message_id: str,
        status: str,
        error: dict[str, str] | None = None,
    ) -> Any: ...


def backoff(attempt: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Full-jitter exponential backoff from the persisted attempt count (1-based)."""
    # The exponent is capped: a send that may have been accepted retries until the horizon,
    # and 2.0 ** 1024 would overflow a float.
    ceiling = min(cap, base * 2.0 ** min(max(0, attempt - 1), 60))
    return float(random.uniform(ceiling / 2, ceiling))


def report_backoff(attempt: int) -> float:
    """HighLevel's 403 window lasts 5-10 s, sometimes longer: 5, 10, 20, 40, then every 60 s."""
    return float(min(60.0, 5.0 * 2.0 ** max(0, attempt - 1)) * random.uniform(0.9, 1.1))


def idempotency_key(message: Message) -> str:
    # The HighLevel messageId: stable across all our retries of one message, and new when a
    # user presses "retry" in HighLevel (that creates a new messageId, so a new send is right).
    return message.ghl_message_id


def error_body(code: str | None, message: str) -> dict[str, str]:
    return {"code": code or "ERROR", "type": "saas", "message": message[:500]}


class Bridge:
    """Runs one claimed job to its next state. Network calls happen outside transactions."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        gateways: GatewayResolver,
        reporter: StatusReporter,
        *,
        worker_id: str,
        clock: Callable[[], datetime] = repo.utcnow,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.gateways = gateways
        self.reporter = reporter
        self.worker_id = worker_id
        self.clock = clock

    async def run(self, job: ClaimedJob) -> None:
        handler = {"send": self._send, "poll": self._poll, "report": self._report}.get(job.kind)
        async with self.sessions() as session:
            message = await repo.get_message(session, job.message_id)
        if handler is None or message is None:
            async with self.sessions.begin() as session:
                await repo.kill_job(session, job, self.worker_id, f"unknown job kind {job.kind}")
            return
        with metrics.JOB_SECONDS.labels(job.kind).time():
            await handler(job, message)

    # --- send ------------------------------------------------------------------------------

    async def _send(self, job: ClaimedJob, message: Message) -> None:
        bound = log.bind(message_id=message.ghl_message_id, location_id=message.location_id)
        if message.status not in {"queued", "dead"}:
            # Already accepted or finished (a replayed job after a crash between commit and
            # finish cannot happen, but an operator replay of a finished message can).
            async with self.sessions.begin() as session:
                await repo.finish_job(session, job, self.worker_id)
            return
        now = self.clock()
        if now - message.created_at > timedelta(seconds=self.settings.send_horizon_seconds):
            if job.payload.get(MAYBE_SENT):
                # Cast may have accepted an earlier try (see _retry_send): "not sent" could be
                # false, so the message is left unknown for the operator, as with a gateway
                # that cannot dedupe.
                await self._fail_message(
                    job,
                    message,
                    "OUTCOME_UNKNOWN",
                    "The SMS gateway stopped answering; the message may or may not have been "
                    "sent. Check with the gateway before sending it again.",
                    kind="send",
                    status="unknown",
                )
                return
            await self._give_up_send(
                job,
                message,
                "SEND_HORIZON",
                "The SMS gateway could not be reached for too long; the message was not sent. "
                "Send it again.",
            )
            return
        try:
            async with self.sessions() as session:
                account = await self.gateways.for_location(session, message.location_id)
        except NoGatewayAccount as exc:
            await self._fail_message(job, message, "NO_GATEWAY_ACCOUNT", str(exc), kind="send")
            return
        request = SendRequest(
            to_e164=message.phone_e164 or message.phone_raw,
            text=message.text,
            idempotency_key=idempotency_key(message),
            sender_id=account.sender_id,
            channel=account.channel,
        )
        started = time.monotonic()
        try:
            result = await account.gateway.send(request)
        except GatewayError as exc:
            elapsed = int((time.monotonic() - started) * 1000)
            metrics.GATEWAY_SENDS.labels("error" if not exc.retryable else "retry").inc()
            if exc.retryable and (
                account.gateway.capabilities.idempotency_keys or not exc.outcome_unknown
            ):
                await self._retry_send(job, message, exc, elapsed)
            elif exc.retryable:
                # Without idempotency keys a retry after an ambiguous failure could send twice.
                await self._fail_message(
                    job,
                    message,
                    exc.code or "OUTCOME_UNKNOWN",
                    f"The gateway did not confirm the send ({exc.message}); not retried to "
                    "avoid a double send.",
                    kind="send",
                    status="unknown",
                    http_status=exc.http_status,
                    duration_ms=elapsed,
                )
            else:
                await self._fail_message(
                    job,
                    message,
                    exc.code,
                    f"{account.gateway.capabilities.name}: {exc.message}",
                    kind="send",
                    http_status=exc.http_status,
                    duration_ms=elapsed,
                )
            return
        elapsed = int((time.monotonic() - started) * 1000)
        metrics.GATEWAY_SENDS.labels("accepted").inc()
        bound.info(
            "gateway_accepted",
            gateway_message_id=result.gateway_message_id,
            parts=result.parts,
            replayed=result.replayed,
        )
        async with self.sessions.begin() as session:
            if not await repo.finish_job(session, job, self.worker_id):
                return  # lease lost: the re-claiming worker owns the message now
            await repo.update_message(
                session,
                message.id,
                status="accepted",
                channel=account.channel,
                gateway_message_id=result.gateway_message_id,
                gateway_parts=result.parts,
                gateway_status="sent",
                accepted_at=now,
                error_code=None,
                error_message=None,
            )
            await repo.record_attempt(
                session,
                message_id=message.id,
                job_id=job.id,
                kind="send",
                outcome="replayed" if result.replayed else "accepted",
                http_status=200,
                gateway_message_id=result.gateway_message_id,
                duration_ms=elapsed,
            )
            if result.sandbox or not account.gateway.capabilities.status_poll:
                # Sandbox-key ids cannot be polled (gateways.md §1.7) and some gateways have no
                # status at all: nothing confirms delivery, so HighLevel keeps "pending".
                await repo.update_message(session, message.id, status="unknown")
            else:
                await repo.enqueue_job(
                    session,
                    message.id,
                    "poll",
                    now + timedelta(seconds=self.settings.poll_gaps[0]),
                    {"channel": account.channel},
                )

    async def _retry_send(
        self, job: ClaimedJob, message: Message, exc: GatewayError, elapsed: int
    ) -> None:
        # A send that got no usable answer (a timeout, a connection cut mid-answer, an
        # unreadable 2xx) may have been accepted and billed by the gateway. Giving up on it
        # would tell HighLevel "failed" about an SMS that was sent, inviting a resend (a second
        # SMS, a second bill). A retry under the same idempotency key cannot send twice, so
        # such a message is retried until the send horizon instead: a replay then reveals the
        # accepted send. A 5xx answer counts as not processed, like a 429.
        maybe_sent = bool(job.payload.get(MAYBE_SENT)) or (
            exc.outcome_unknown and (exc.http_status or 0) < 500
        )
        if job.attempts >= self.settings.send_max_attempts and not maybe_sent:
            await self._give_up_send(
                job,
                message,
                exc.code or "GATEWAY_UNAVAILABLE",
                f"The SMS gateway kept failing ({exc.message}) after {job.attempts} attempts; "
                "the message was not sent. Send it again later.",
                http_status=exc.http_status,
            )
            return
        await self._retry_later(
            job,
            message,
            kind="send",
            delay=self._backoff(job.attempts, exc.retry_after),
            error=str(exc),
            payload={**job.payload, MAYBE_SENT: True} if maybe_sent else None,
            http_status=exc.http_status,
            code=exc.code,
            detail=exc.message,
            duration_ms=elapsed,
        )

    def _backoff(self, attempts: int, retry_after: float | None, cap: float | None = None) -> float:
        """The configured jittered backoff, never shorter than the upstream's Retry-After."""
        limit = self.settings.retry_cap_seconds if cap is None else cap
        jittered = backoff(attempts, base=self.settings.retry_base_seconds, cap=limit)
        return max(jittered, retry_after or 0.0)

    async def _retry_later(
        self,
        job: ClaimedJob,
        message: Message,
        *,
        kind: str,
        delay: float,
        error: str,
        payload: dict[str, Any] | None = None,
        **attempt: Any,
    ) -> None:
        """Put the job back `delay` seconds from now and record the try on the timeline."""
        async with self.sessions.begin() as session:
            if not await repo.reschedule_job(
                session,
                job,
                self.worker_id,
                run_at=self.clock() + timedelta(seconds=delay),
                error=error,
                payload=payload,
            ):
                return
            await repo.record_attempt(
                session,
                message_id=message.id,
                job_id=job.id,
                kind=kind,
                outcome="retry",
                **attempt,
            )

    async def _give_up_send(
        self,
        job: ClaimedJob,
        message: Message,
        code: str,
        text: str,
        *,
        http_status: int | None = None,
    ) -> None:
        """Dead: visible in `messages list --status dead`, replayable, and HighLevel told why."""
        async with self.sessions.begin() as session:
            if not await repo.kill_job(session, job, self.worker_id, text):
                return
            await repo.update_message(
                session, message.id, status="dead", error_code=code, error_message=text
            )
            await repo.record_attempt(
                session,
                message_id=message.id,
                job_id=job.id,
                kind="send",
                outcome="dead",
                http_status=http_status,
                code=code,
                detail=text,
            )
            await self._enqueue_report(session, message, "failed", error_body(code, text))
        metrics.MESSAGES_FINAL.labels("dead").inc()

    async def _fail_message(
        self,
        job: ClaimedJob,
        message: Message,
        code: str | None,
        text: str,
        *,
        kind: str,
        status: str = "failed",
        http_status: int | None = None,
        duration_ms: int | None = None,
    ) -> None:
        async with self.sessions.begin() as session:
            if not await repo.finish_job(session, job, self.worker_id):
                return
            await repo.update_message(
                session, message.id, status=status, error_code=code, error_message=text
            )
            await repo.record_attempt(
                session,
                message_id=message.id,
                job_id=job.id,
                kind=kind,
                outcome=status,
                http_status=http_status,
                code=code,
                detail=text,
                duration_ms=duration_ms,
            )
            if status == "failed":
                await self._enqueue_report(session, message, "failed", error_body(code, text))
        metrics.MESSAGES_FINAL.labels(status).inc()

    async def _enqueue_report(
        self, session: AsyncSession, message: Message, status: str, error: dict[str, str] | None
    ) -> None:
        earliest = message.created_at + timedelta(
            seconds=self.settings.report_initial_delay_seconds
        )
        payload: dict[str, Any] = {"status": status}
        if error is not None:
            payload["error"] = error
        await repo.enqueue_job(session, message.id, "report", max(self.clock(), earliest), payload)

    # --- poll ------------------------------------------------------------------------------

    async def _poll(self, job: ClaimedJob, message: Message) -> None:
        now = self.clock()
        accepted_at = message.accepted_at or message.created_at
        past_horizon = now - accepted_at > timedelta(
            seconds=self.settings.status_poll_horizon_seconds
        )
        channel = "sim" if job.payload.get("channel") == "sim" else "sms"
        try:
            async with self.sessions() as session:
                account = await self.gateways.for_location(session, message.location_id)
            status = await account.gateway.status(message.gateway_message_id or "", channel)
        except (GatewayError, NoGatewayAccount) as exc:
            code = exc.code if isinstance(exc, GatewayError) else "NO_GATEWAY_ACCOUNT"
            give_up = past_horizon or (
                isinstance(exc, NotFoundError) and job.attempts >= POLL_NOT_FOUND_LIMIT
            )
            if give_up:
                await self._no_report(job, message, f"status unavailable: {exc}")
            else:
                await self._repoll(job, message, error=str(exc), code=code)
            return
        if status.terminal:
            await self._finish_delivery(job, message, status)
        elif past_horizon:
            await self._no_report(job, message, f"still {status.raw_status} at the horizon")
        else:
            await self._repoll(job, message, raw_status=status.raw_status)

    async def _repoll(
        self,
        job: ClaimedJob,
        message: Message,
        *,
        raw_status: str | None = None,
        error: str | None = None,
        code: str | None = None,
    ) -> None:
        gaps = self.settings.poll_gaps
        gap = gaps[min(job.attempts, len(gaps) - 1)]
        async with self.sessions.begin() as session:
            if not await repo.reschedule_job(
                session,
                job,
                self.worker_id,
                run_at=self.clock() + timedelta(seconds=gap),
                error=error,
            ):
                return
            if raw_status is not None and raw_status != message.gateway_status:
                await repo.update_message(session, message.id, gateway_status=raw_status)
            if error is not None:
                await repo.record_attempt(
                    session,
                    message_id=message.id,
                    job_id=job.id,
                    kind="poll",
                    outcome="error",
                    code=code,
                    detail=error,
                )

    async def _finish_delivery(
        self, job: ClaimedJob, message: Message, status: DeliveryStatus
    ) -> None:
        delivered = status.state == "delivered"
        if delivered:
            error = None
            ours = "delivered"
        else:
            reason = status.error_message or status.dlr_status or status.raw_status
            code = status.dlr_status or status.raw_status.upper()
            error = error_body(code, f"Carrier did not deliver the SMS: {reason}")
            ours = "failed"
        async with self.sessions.begin() as session:
            if not await repo.finish_job(session, job, self.worker_id):
                return
            await repo.update_message(
                session,
                message.id,
                status=ours,
                gateway_status=status.raw_status,
                error_code=None if delivered else (status.dlr_status or status.raw_status),
                error_message=None if error is None else error["message"],
            )
            await repo.record_attempt(
                session,
                message_id=message.id,
                job_id=job.id,
                kind="poll",
                outcome=ours,
                code=status.dlr_status,
                gateway_message_id=message.gateway_message_id,
                detail=status.error_message,
            )
            await self._enqueue_report(session, message, ours, error)
        metrics.MESSAGES_FINAL.labels(ours).inc()

    async def _no_report(self, job: ClaimedJob, message: Message, detail: str) -> None:
        """No delivery report by the horizon: never claim delivery; tell HighLevel as configured."""
        async with self.sessions.begin() as session:
            if not await repo.finish_job(session, job, self.worker_id):
                return
            text = (
                "No delivery report arrived from the carrier in time; "
                "delivery could not be confirmed."
            )
            await repo.update_message(
                session, message.id, status="unknown", error_code="NO_DLR", error_message=text
            )
            await repo.record_attempt(
                session,
                message_id=message.id,
                job_id=job.id,
                kind="poll",
                outcome="unknown",
                detail=detail,
            )
            if self.settings.status_on_horizon == "failed":
                await self._enqueue_report(session, message, "failed", error_body("NO_DLR", text))
        metrics.MESSAGES_FINAL.labels("unknown").inc()

    # --- report ----------------------------------------------------------------------------

    async def _report(self, job: ClaimedJob, message: Message) -> None:
        from castbridge.ghl import errors as ghl_errors

        status = str(job.payload.get("status", ""))
        error = job.payload.get("error")
        if message.ghl_status in TERMINAL_GHL and status != message.ghl_status:
            # Only forward transitions (ghl.md §8): HighLevel already shows a final status, e.g.
            # `failed` for a dead message an operator replayed. The skip goes on the timeline
            # so `messages show` explains why HighLevel and castbridge differ.
            async with self.sessions.begin() as session:
                if await repo.finish_job(session, job, self.worker_id):
                    await repo.record_attempt(
                        session,
                        message_id=message.id,
                        job_id=job.id,
                        kind="report",
                        outcome="skipped",
                        detail=f"HighLevel already shows {message.ghl_status}; "
                        f"not changed to {status}",
                    )
            return
        started = time.monotonic()
        try:
            await self.reporter.update_message_status(
                message.location_id, message.ghl_message_id, status, error
            )
        except ghl_errors.GHLError as exc:
            elapsed = int((time.monotonic() - started) * 1000)
            metrics.GHL_REPORTS.labels(type(exc).__name__).inc()
            await self._report_failed(job, message, exc, elapsed)
            return
        elapsed = int((time.monotonic() - started) * 1000)
        metrics.GHL_REPORTS.labels("ok").inc()
        async with self.sessions.begin() as session:
            if not await repo.finish_job(session, job, self.worker_id):
                return
            await repo.update_message(session, message.id, ghl_status=status)
            await repo.record_attempt(
                session,
                message_id=message.id,
                job_id=job.id,
                kind="report",
                outcome=f"reported {status}",
                http_status=200,
                duration_ms=elapsed,
            )

    async def _report_failed(
        self, job: ClaimedJob, message: Message, exc: Exception, elapsed: int
    ) -> None:
        from castbridge.ghl import errors as ghl_errors

        retryable = bool(getattr(exc, "retryable", False))
        status_code = getattr(exc, "status_code", None)
        if retryable and job.attempts < self.settings.report_max_attempts:
            if isinstance(exc, ghl_errors.NotDownstreamedError):
                delay = report_backoff(job.attempts)
            else:
                delay = self._backoff(
                    job.attempts,
                    getattr(exc, "retry_after", None),
                    cap=min(120.0, self.settings.retry_cap_seconds),
                )
            await self._retry_later(
                job,
                message,
                kind="report",
                delay=delay,
                error=str(exc),
                http_status=status_code,
                code=type(exc).__name__,
                detail=str(exc),
                duration_ms=elapsed,
            )
            return
        log.warning(
            "report_dead",
            message_id=message.ghl_message_id,
            location_id=message.location_id,
            error=str(exc),
        )
        async with self.sessions.begin() as session:
            if not await repo.kill_job(session, job, self.worker_id, str(exc)):
                return
            await repo.record_attempt(
                session,
                message_id=message.id,
                job_id=job.id,
                kind="report",
                outcome="dead",
                http_status=status_code,
                code=type(exc).__name__,
                detail=str(exc),
                duration_ms=elapsed,
            )
