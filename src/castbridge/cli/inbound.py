"""`castbridge inbound ...`: replies and opt-out signals from handsets, where each went, and
replaying one (to a chosen location when it could not be routed)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import typer

from castbridge.cli._common import JsonOption, emit, fail, run, settings_or_exit
from castbridge.store.models import InboundEvent

app = typer.Typer(help="Replies and opt-out signals from handsets.", no_args_is_help=True)

# Runs of digits long enough to be a phone number, hidden in raw gateway bodies.
_DIGITS = re.compile(r"\+?\d[\d ()-]{6,}\d")


def _stamp(when: datetime | None) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds") if when else ""


def _summary(event: InboundEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "received": _stamp(event.received_at),
        "kind": event.kind,
        "gateway": event.gateway,
        "account": event.account_id,
        "from": event.phone_masked,
        "location": event.location_id or "",
        "route": event.route or "",
        "status": event.status,
        "keyword": event.keyword or "",
        "source": event.source,
        "error": event.error_message or "",
    }


@app.command("list")
def list_inbound(
    location: str | None = typer.Option(None, "--location", help="Only this location."),
    status: str | None = typer.Option(
        None, "--status", help="received, delivered, unroutable or dead."
    ),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    as_json: bool = JsonOption,
) -> None:
    """Newest first (numbers masked, text not shown)."""
    settings = settings_or_exit()

    async def _go() -> list[dict[str, Any]]:
        from castbridge.resources import open_store
        from castbridge.store import inbound as inbound_store

        async with open_store(settings) as opened, opened.store.read() as session:
            rows = await inbound_store.listing(
                session, location_id=location, status=status, limit=limit
            )
            return [_summary(row) for row in rows]

    emit(run(_go()), as_json=as_json, title="inbound")


@app.command("show")
def show(
    inbound_id: int,
    with_text: bool = typer.Option(
        False, "--with-text", help="Also print the reply's text and the gateway's raw body."
    ),
    as_json: bool = JsonOption,
) -> None:
    """One reply: the routing decision, the HighLevel contact, conversation and message it
    became (or the error), and with --with-text what the handset wrote."""
    settings = settings_or_exit()

    async def _go() -> dict[str, Any] | None:
        from castbridge.resources import open_store
        from castbridge.store import events as event_store
        from castbridge.store import inbound as inbound_store

        async with open_store(settings) as opened, opened.store.read() as session:
            event = await inbound_store.get(session, inbound_id)
            if event is None:
                return None
            detail = {
                **_summary(event),
                "arrived": _stamp(event.arrived_at),
                "gateway_message_id": event.gateway_message_id or "",
                "highlevel_contact": event.ghl_contact_id or "",
                "highlevel_conversation": event.ghl_conversation_id or "",
                "highlevel_message": event.ghl_message_id or "",
                "add_attempted": event.post_attempted,
                "error_code": event.error_code or "",
                "attachments": len(event.attachments or []),
                "text_chars": len(event.text),
            }
            if with_text:
                detail["text"] = event.text
                raw = None
                if event.gateway_event_id is not None:
                    stored = await event_store.gateway_event(session, event.gateway_event_id)
                    if stored is not None:
                        raw = _DIGITS.sub("<number>", opened.vault.open(stored.body_enc))
                detail["raw_event"] = raw or "(found by polling: no webhook body)"
            return detail

    detail = run(_go())
    if detail is None:
        fail(f"no inbound event {inbound_id}")
    emit([detail], as_json=as_json, single=True, title=f"inbound {inbound_id}")


@app.command("retry")
def retry(
    inbound_id: int,
    location: str | None = typer.Option(
        None, "--location", help="Deliver it to this location (for an unroutable reply)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Hand a reply to HighLevel again: one parked as unroutable (give --location), or one
    that went dead after HighLevel kept refusing it. A delivered one is not posted twice."""
    settings = settings_or_exit()

    async def _go() -> str | None:
        from castbridge.inbound.intake import inbound_job
        from castbridge.resources import open_store
        from castbridge.store import events, jobs
        from castbridge.store import inbound as inbound_store

        async with open_store(settings) as opened, opened.store.write() as session:
            event = await inbound_store.get(session, inbound_id)
            if event is None:
                return f"no inbound event {inbound_id}"
            if event.status == "delivered":
                return f"inbound {inbound_id} is already in HighLevel ({event.ghl_message_id})"
            if event.location_id is None and location is None:
                return f"inbound {inbound_id} has no location: give --location LOCATION_ID"
            values: dict[str, Any] = {"status": "received", "error_code": None}
            if location is not None and location != event.location_id:
                # A new location's contact and conversation: nothing was added there yet.
                values.update(
                    location_id=location,
                    route="operator",
                    post_attempted=False,
                    ghl_contact_id=None,
                    ghl_conversation_id=None,
                )
            await inbound_store.update_event(session, inbound_id, values)
            await jobs.enqueue(session, inbound_job(inbound_id, event.account_id))
            await events.add_audit(
                session,
                "inbound_retried",
                location_id=location or event.location_id,
                detail={"inbound": inbound_id},
            )
            return None

    problem = run(_go())
    if problem is not None:
        fail(problem)
    if as_json:
        typer.echo(json.dumps({"id": inbound_id, "queued": True, "location": location}))
    else:
        typer.echo(f"inbound {inbound_id} queued for delivery to HighLevel")
