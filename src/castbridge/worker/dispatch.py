"""Which handler runs which job kind, what a crash means for each kind, and loading a batch's
context in one statement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from castbridge.logging import get_logger
from castbridge.outbound import reconcile, report, send, status
from castbridge.outbound.backoff import retry_delay
from castbridge.outbound.runtime import MessageContext, Runtime, later, to_report
from castbridge.store import messages as message_store
from castbridge.store.jobs import AttemptRecord, ClaimedJob, Transition

log = get_logger(__name__)

MessageHandler = Callable[[Runtime, ClaimedJob, MessageContext], Awaitable[Transition | None]]
OtherHandler = Callable[[Runtime, ClaimedJob], Awaitable[Transition | None]]

MESSAGE_HANDLERS: dict[str, MessageHandler] = {
    "send": send.run,
    "reconcile": reconcile.run,
    "poll": status.poll,
    "report": report.run,
}
# A crash (a bug, the database gone mid-job) is retried this many times before the job takes
# its kind's terminal path.
MAX_CRASHES = 5


class Dispatcher:
    def __init__(self, runtime: Runtime, others: dict[str, OtherHandler] | None = None) -> None:
        self.runtime = runtime
        self.others: dict[str, OtherHandler] = {"gateway_event": status.apply_event}
        self.others.update(others or {})

    async def contexts(
        self, session: AsyncSession, jobs: Sequence[ClaimedJob]
    ) -> dict[int, MessageContext]:
        """What the claimed jobs work on, read in the claim's transaction (one statement)."""
        ids = [job.message_id for job in jobs if job.message_id is not None]
        if not ids:
            return {}
        found = await message_store.contexts(session, ids)
        return {
            message_id: MessageContext(message, account, state, opt_out)
            for message_id, (message, account, state, opt_out) in found.items()
        }

    async def run(self, job: ClaimedJob, ctx: MessageContext | None) -> Transition | None:
        if job.kind in MESSAGE_HANDLERS:
            if ctx is None:
                return Transition(fate="dead", error="its message no longer exists")
            transition = await MESSAGE_HANDLERS[job.kind](self.runtime, job, ctx)
            if transition is not None and job.kind != "report" and report.due_now(transition):
                return await report.inline(self.runtime, job, ctx, transition)
            return transition
        handler = self.others.get(job.kind)
        if handler is None:
            return Transition(fate="dead", error=f"unknown job kind {job.kind}")
        return await handler(self.runtime, job)

    def crashed(
        self, job: ClaimedJob, ctx: MessageContext | None, exc: BaseException
    ) -> Transition:
        """A handler raised: retry with backoff, and after MAX_CRASHES end the job through its
        kind's terminal path, so no message is left queued or accepted with HighLevel never
        told (and no send that may have happened is reported failed)."""
        crashes = int(job.payload.get("crashes", 0)) + 1
        detail = f"crashed: {type(exc).__name__}: {exc}"
        attempt = AttemptRecord(job.kind, "crashed", detail=detail)
        if crashes < MAX_CRASHES:
            return later(
                job,
                retry_delay(self.runtime.settings, crashes),
                payload={**job.payload, "crashes": crashes},
                error=detail,
                attempt=attempt,
            )
        rt = self.runtime
        if ctx is None or job.kind not in MESSAGE_HANDLERS:
            return Transition(fate="dead", error=detail, attempt=attempt)
        message = ctx.message
        text = "castbridge kept failing on this message; an operator has been alerted."
        if job.kind in {"send", "reconcile"}:
            if message.maybe_sent:
                return Transition(
                    fate="done",
                    message={
                        "status": "unknown",
                        "error_code": "INTERNAL",
                        "error_message": text + " It may or may not have been sent.",
                    },
                    message_if_status=frozenset({"queued", "dead"}),
                    attempt=attempt,
                )
            return to_report(
                rt,
                message,
                "failed",
                code="INTERNAL",
                text=text,
                values={"status": "dead"},
                attempt=attempt,
            )
        if job.kind == "poll":
            return Transition(
                fate="done",
                message={"status": "unknown", "error_code": "NO_DLR", "error_message": text},
                message_if_status=frozenset({"accepted"}),
                attempt=attempt,
            )
        return Transition(fate="dead", error=detail, attempt=attempt)


def merge_others(*groups: dict[str, OtherHandler]) -> dict[str, OtherHandler]:
    merged: dict[str, Any] = {}
    for group in groups:
        merged.update(group)
    return merged
