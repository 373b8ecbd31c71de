"""`castbridge messages ...`: what happened to a message, and replaying dead ones."""

from __future__ import annotations

from typing import Any

import typer

from castbridge.cli._common import JsonOption, emit, fail, run, settings_or_exit
from castbridge.logging import mask_phone
from castbridge.resources import open_store
from castbridge.store import repository as repo
from castbridge.store.models import Message

app = typer.Typer(help="Inspect and replay messages.", no_args_is_help=True)


def _summary(message: Message) -> dict[str, Any]:
    return {
        "message_id": message.ghl_message_id,
        "location": message.location_id,
        "to": mask_phone(message.phone_e164 or message.phone_raw),
        "status": message.status,
        "highlevel": message.ghl_status or "",
        "parts": message.gateway_parts or message.parts_estimate,
        "cast_id": message.gateway_message_id or "",
        "error": message.error_message or "",
        "created": message.created_at.isoformat(timespec="seconds"),
    }


@app.command("list")
def list_messages(
    location: str | None = typer.Option(None, "--location", help="Only this location id."),
    status: str | None = typer.Option(
        None, "--status", help="queued, accepted, delivered, failed, unknown or dead."
    ),
    limit: int = typer.Option(50, min=1, max=10_000),
    as_json: bool = JsonOption,
) -> None:
    """Newest messages first."""
    settings = settings_or_exit()

    async def _go() -> list[dict[str, Any]]:
        async with open_store(settings) as store, store.sessions() as session:
            rows = await repo.list_messages(
                session, location_id=location, status=status, limit=limit
            )
            return [_summary(row) for row in rows]

    emit(run(_go()), as_json=as_json, title="messages")


@app.command("show")
def show(message_id: str, as_json: bool = JsonOption) -> None:
    """One message and its full timeline (every attempt and job)."""
    settings = settings_or_exit()

    async def _go() -> dict[str, Any] | None:
        async with open_store(settings) as store, store.sessions() as session:
            message = await repo.get_message_by_ghl_id(session, message_id)
            if message is None:
                return None
            attempts = await repo.attempts_for_message(session, message.id)
            jobs = await repo.jobs_for_message(session, message.id)
            return {
                **_summary(message),
                "encoding": message.encoding,
                "gateway_status": message.gateway_status,
                "error_code": message.error_code,
                "timeline": [
                    {
                        "at": a.at.isoformat(timespec="milliseconds"),
                        "kind": a.kind,
                        "outcome": a.outcome,
                        "http": a.http_status,
                        "code": a.code,
                        "gateway_id": a.gateway_message_id,
                        "detail": a.detail,
                        "ms": a.duration_ms,
                    }
                    for a in attempts
                ],
                "jobs": [
                    {
                        "kind": j.kind,
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
    timeline = detail.pop("timeline")
    jobs = detail.pop("jobs")
    emit([detail], as_json=False, single=True, title=f"message {message_id}")
    if timeline:
        emit(timeline, as_json=False, title="timeline")
    if jobs:
        emit(jobs, as_json=False, title="jobs")


@app.command("retry")
def retry(message_id: str) -> None:
    """Replay a dead message: its dead jobs become due now with a fresh attempt budget.

    The send reuses the same idempotency key, so if Cast did take the message before, it
    answers with a replay instead of sending (and billing) again. HighLevel keeps a final
    status it was already given (a dead message was reported `failed`): castbridge only sends
    forward transitions, so the replay's outcome shows here, in `messages show`.
    """
    settings = settings_or_exit()

    async def _go() -> tuple[bool, int, str | None]:
        async with open_store(settings) as store, store.sessions.begin() as session:
            message = await repo.get_message_by_ghl_id(session, message_id)
            if message is None:
                return False, 0, None
            count = await repo.requeue_dead_jobs(session, message.id)
            if count and message.status == "dead":
                await repo.update_message(session, message.id, status="queued")
            return True, count, message.ghl_status

    found, count, ghl_status = run(_go())
    if not found:
        fail(f"no message with HighLevel id {message_id}")
    if not count:
        fail(f"message {message_id} has no dead jobs to retry")
    typer.echo(f"requeued {count} job(s) for {message_id}; a running worker picks them up now")
    if ghl_status in {"delivered", "failed"}:
        typer.echo(
            f"note: HighLevel already shows {ghl_status} for this message and keeps it; "
            f"follow the replay with `castbridge messages show {message_id}`"
        )
