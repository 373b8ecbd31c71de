"""`castbridge installations list|reset`: which locations and agencies installed the app."""

from __future__ import annotations

from typing import Any

import typer

from castbridge.cli._common import JsonOption, emit, fail, run, settings_or_exit
from castbridge.resources import open_store
from castbridge.store import installations as store

app = typer.Typer(help="HighLevel installations (OAuth grants).", no_args_is_help=True)


@app.command("list")
def list_installations(as_json: bool = JsonOption) -> None:
    """Each installation: location, company, token expiry, state (tokens are never shown)."""
    settings = settings_or_exit()

    async def _go() -> list[dict[str, Any]]:
        async with open_store(settings) as opened, opened.sessions() as session:
            return [
                {
                    "type": info.user_type,
                    "location": info.location_id or "",
                    "company": info.company_id or "",
                    "state": info.state,
                    "reason": info.state_reason or "",
                    "token_expires": info.expires_at.isoformat(timespec="seconds")
                    if info.expires_at
                    else "",
                    "updated": info.updated_at.isoformat(timespec="seconds"),
                }
                for info in await store.list_installations(session)
            ]

    emit(run(_go()), as_json=as_json, title="installations")


@app.command("reset")
def reset(location_id: str) -> None:
    """Clear a wrong `needs_reinstall` (or pause, or disable) of a location whose tokens were
    kept: the next HighLevel call tries its refresh token again.

    Usage: castbridge installations reset LOCATION_ID
    """
    settings = settings_or_exit()

    async def _go() -> bool:
        async with open_store(settings) as opened, opened.store.write() as session:
            done = await store.reset_needs_reinstall(session, location_id)
            if done:
                from castbridge.store import events

                await events.add_audit(session, "installation_reset", location_id=location_id)
            return done

    if not run(_go()):
        fail(f"location {location_id} has no kept tokens to reset (reinstall it instead)")
    typer.echo(f"installation of {location_id} is active again")
