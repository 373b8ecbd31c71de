"""`castbridge installations list`: which locations and agencies have installed the app."""

from __future__ import annotations

from typing import Any

import typer

from castbridge.cli._common import JsonOption, emit, run, settings_or_exit
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
