"""`castbridge locations ...`: each sub-account's own Cast account, sender ID, channel, region."""

from __future__ import annotations

from typing import Any

import typer

from castbridge.cli._common import JsonOption, emit, fail, run, settings_or_exit
from castbridge.resources import open_store
from castbridge.store import repository as repo

app = typer.Typer(help="Per-location gateway settings.", no_args_is_help=True)


def mask_key(key: str) -> str:
    """`cast_1a2b…9f` style: enough to recognise a key, useless to steal."""
    if len(key) <= 12:
        return "***"
    return f"{key[:7]}…{key[-4:]}"


@app.command("configure")
def configure(
    location_id: str,
    cast_api_key: str | None = typer.Option(
        None, "--cast-api-key", help="This location's own Cast API key (stored encrypted)."
    ),
    sender_id: str | None = typer.Option(None, "--sender-id", help="Approved Cast sender ID."),
    channel: str | None = typer.Option(None, "--channel", help="sms, otp or sim."),
    region: str | None = typer.Option(
        None, "--region", help="Default region for numbers without a country code, e.g. PH."
    ),
) -> None:
    """Set a location's gateway settings; options left out keep their current value."""
    settings = settings_or_exit()
    if channel is not None and channel not in {"sms", "otp", "sim"}:
        fail("--channel must be sms, otp or sim")
    if region is not None and (len(region) != 2 or not region.isalpha()):
        fail("--region must be a two-letter region code such as PH")
    if sender_id is not None and not 1 <= len(sender_id) <= 20:
        fail("--sender-id must be 1 to 20 characters")
    if cast_api_key is not None and not cast_api_key.startswith("cast_"):
        fail("--cast-api-key does not look like a Cast key (cast_...)")
    if all(v is None for v in (cast_api_key, sender_id, channel, region)):
        fail("nothing to change: give at least one of --cast-api-key, --sender-id, ...")

    async def _go() -> None:
        async with open_store(settings) as store, store.sessions.begin() as session:
            await repo.upsert_location_settings(
                session,
                location_id,
                api_key_enc=store.secret_box.encrypt(cast_api_key) if cast_api_key else None,
                sender_id=sender_id,
                channel=channel,
                region=region.upper() if region else None,
            )

    run(_go())
    typer.echo(f"location {location_id} updated")


@app.command("list")
def list_locations(as_json: bool = JsonOption) -> None:
    """Every configured location (keys masked)."""
    settings = settings_or_exit()

    async def _go() -> list[dict[str, Any]]:
        async with open_store(settings) as store, store.sessions() as session:
            rows = await repo.list_location_settings(session)
            return [
                {
                    "location": row.location_id,
                    "gateway": row.gateway,
                    "cast_api_key": mask_key(store.secret_box.decrypt(row.api_key_enc))
                    if row.api_key_enc
                    else "(default CAST_API_KEY)",
                    "sender_id": row.sender_id or "(default)",
                    "channel": row.channel or "(default)",
                    "region": row.region or "(default)",
                    "updated": row.updated_at.isoformat(timespec="seconds"),
                }
                for row in rows
            ]

    emit(run(_go()), as_json=as_json, title="locations")
