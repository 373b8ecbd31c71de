"""`castbridge messages ...`: what happened to a message, and replaying it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from castbridge.cli._common import JsonOption, emit, err_console, fail, run, settings_or_exit
from castbridge.resources import open_store
from castbridge.store import jobs as job_store
from castbridge.store import messages as message_store
from castbridge.store.models import Message

app = typer.Typer(help="Inspect and replay messages.", no_args_is_help=True)

REPLAYABLE = frozenset({"dead", "failed", "unknown", "cancelled"})


def _summary(message: Message) -> dict[str, Any]:
    return {
        "message_id": message.ghl_message_id,
        "location": message.location_id,
        "to": message.phone_masked,
        "status": message.status,
        "highlevel": message.ghl_status or "",
        "gateway": message.gateway or "",
        "account": message.account_id,
        "parts": message.gateway_parts or message.parts_estimate,
        "gateway_id": message.gateway_message_id or "",
        "error": message.error_message or "",
        "created": message.created_at.isoformat(timespec="seconds"),
    }


def _stamp(when: datetime | None) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds") if when else ""


def timeline(message: Message, attempts: list[Any]) -> list[dict[str, Any]]:
    """Milestones kept on the message (received, sent, settled, reported) merged with every
    recorded try that did not simply succeed (retries, errors, holds, skips)."""
    rows: list[dict[str, Any]] = [
        {"at": _stamp(message.created_at), "kind": "intake", "outcome": "received"}
    ]
    if message.accepted_at:
        rows.append(
            {
                "at": _stamp(message.accepted_at),
                "kind": "send",
                "outcome": "accepted",
                "gateway_id": message.gateway_message_id,
            }
        )
    for attempt in attempts:
        rows.append(
            {
                "at": _stamp(attempt.at),
                "kind": attempt.kind,
                "outcome": attempt.outcome,
                "http": attempt.http_status,
                "code": attempt.code,
                "gateway_id": attempt.gateway_message_id,
                "detail": attempt.detail,
                "ms": attempt.duration_ms,
            }
        )
    settled = message.finished_at and message.status in {"delivered", "failed", "unknown", "sent"}
    if settled and not any(r["outcome"] == message.status for r in rows[1:]):
        rows.append(
            {
                "at": _stamp(message.finished_at),
                "kind": "status",
                "outcome": message.status,
                "code": message.error_code,
                "detail": message.error_message,
            }
        )
    if message.ghl_reported_at:
        rows.append(
            {
                "at": _stamp(message.ghl_reported_at),
                "kind": "report",
                "outcome": f"reported {message.ghl_status}",
            }
        )
    rows.sort(key=lambda row: row["at"])
    return rows


@app.command("list")
def list_messages(
    location: str | None = typer.Option(None, "--location", help="Only this location id."),
    status: str | None = typer.Option(
        None,
        "--status",
        help="queued, accepted, delivered, failed, unknown, sent, dead or cancelled.",
    ),
    limit: int = typer.Option(50, min=1, max=10_000),
    as_json: bool = JsonOption,
) -> None:
    """Newest messages first (numbers masked)."""
    settings = settings_or_exit()

    async def _go() -> list[dict[str, Any]]:
        async with open_store(settings) as opened, opened.store.read() as session:
            rows = await message_store.list_messages(
                session, location_id=location, status=status, limit=limit
            )
            return [_summary(row) for row in rows]

    emit(run(_go()), as_json=as_json, title="messages")


async def _one(session: Any, message_id: str, location: str | None) -> Message | None:
    found = await message_store.by_ghl_id(session, message_id, location)
    if len(found) > 1:
        fail(f"{message_id} exists in several locations; add --location")
    return found[0] if found else None


@app.command("show")
def show(
    message_id: str,
    location: str | None = typer.Option(None, "--location"),
    as_json: bool = JsonOption,
) -> None:
    """One message and its full timeline (milestones, every retry and error, its jobs)."""
    settings = settings_or_exit()

    async def _go() -> dict[str, Any] | None:
        async with open_store(settings) as opened, opened.store.read() as session:
            message = await _one(session, message_id, location)
            if message is None:
                return None
            attempts = await message_store.attempts_for(session, message.id)
            jobs = await job_store.for_message(session, message.id)
            return {
                **_summary(message),
                "encoding": message.encoding,
                "held": message.held or "",
                "maybe_sent": message.maybe_sent,
                "gateway_status": message.gateway_status,
                "error_code": message.error_code,
                "timeline": timeline(message, attempts),
                "jobs": [
                    {
                        "kind": j.kind,
                        "lane": j.lane,
                        "state": j.state,
                        "attempts": j.attempts,
                        "run_at": j.run_at.isoformat(timespec="seconds"),
                        "last_error": j.last_error,
                    }
                    for j in jobs
                ],
            }

    detail = run(_go())
    if detail is None:
        fail(f"no message with HighLevel id {message_id}")
    if as_json:
        emit([detail], as_json=True, single=True)
        return
    rows = detail.pop("timeline")
    jobs = detail.pop("jobs")
    emit([detail], as_json=False, single=True, title=f"message {message_id}")
    if rows:
        emit(rows, as_json=False, title="timeline")
    if jobs:
        emit(jobs, as_json=False, title="jobs")


@app.command("retry")
def retry(
    message_id: str,
    location: str | None = typer.Option(None, "--location"),
    force: bool = typer.Option(
        False,
        "--force",
        help="Replay even though HighLevel shows the message as failed (the user may already "
        "have sent it again).",
    ),
) -> None:
    """Replay a message that did not get through: it is sent again on its own account.

    On a gateway with idempotency keys the replay reuses the message's key, so a send the
    gateway took before is answered from its cache instead of going out twice. A message
    HighLevel already shows as failed is refused unless --force: the user may have pressed
    "retry" in HighLevel, which sends a new copy. After a forced replay that is delivered,
    castbridge tries to tell HighLevel and records its answer.
    """
    settings = settings_or_exit()

    async def _go() -> tuple[str, Message | None]:
        async with open_store(settings) as opened, opened.store.write() as session:
            message = await _one(session, message_id, location)
            if message is None:
                return "missing", None
            if message.status not in REPLAYABLE:
                return "not_replayable", message
            if message.ghl_status == "failed" and not force:
                return "needs_force", message
            await message_store.update_message(
                session,
                message.id,
                {
                    "status": "queued",
                    "held": None,
                    "error_code": None,
                    "error_message": None,
                    "finished_at": None,
                    "force_report": force and message.ghl_status == "failed",
                },
            )
            await job_store.enqueue(
                session,
                job_store.NewJob(
                    kind="send",
                    lane="send",
                    run_at=datetime.now(UTC),
                    message_id=message.id,
                    location_id=message.location_id,
                    account_id=message.account_id,
                    payload={"replay": True},
                ),
            )
            from castbridge.store import events

            await events.add_audit(
                session,
                "message_replayed",
                location_id=message.location_id,
                detail={"message": message.ghl_message_id, "forced": force},
            )
            return "queued", message

    outcome, message = run(_go())
    if outcome == "missing":
        fail(f"no message with HighLevel id {message_id}")
    assert message is not None
    if outcome == "not_replayable":
        fail(
            f"message {message_id} is {message.status}; only {', '.join(sorted(REPLAYABLE))} "
            "messages can be replayed"
        )
    if outcome == "needs_force":
        fail(
            f"HighLevel already shows {message_id} as failed, so the user may have sent it "
            "again themselves. Replaying could deliver it twice. Add --force to replay anyway."
        )
    if force and message.ghl_status == "failed":
        err_console.print(
            "[yellow]warning[/yellow] replaying a message HighLevel shows as failed: the "
            "recipient may get it twice if the user already resent it",
            highlight=False,
        )
    typer.echo(f"requeued {message_id}; a running worker sends it now")
