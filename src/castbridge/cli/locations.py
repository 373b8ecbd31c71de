"""`castbridge locations ...`: a sub-account's own gateway account, sender ID, channel, region."""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx2
import typer
from rich.markup import escape

from castbridge.cli._common import JsonOption, emit, err_console, fail, run, settings_or_exit
from castbridge.gateways.registry import load_defaults, names

app = typer.Typer(help="Per-location gateway accounts.", no_args_is_help=True)


def mask_key(key: str) -> str:
    """`cast_1a2b…9f` style: enough to recognise a key, useless to steal."""
    if len(key) <= 12:
        return "***"
    return f"{key[:7]}…{key[-4:]}"


def _read_key(stdin: bool, prompt: bool) -> str | None:
    if stdin:
        key = sys.stdin.readline().strip()
        if not key:
            fail("--api-key-stdin: nothing was read from standard input")
        return key
    if prompt:
        return str(typer.prompt("API key", hide_input=True)).strip()
    return None


@app.command("configure")
def configure(
    location_id: str,
    gateway: str | None = typer.Option(
        None, "--gateway", "-g", help=f"The gateway of the key: {', '.join(names())}."
    ),
    api_key_stdin: bool = typer.Option(
        False, "--api-key-stdin", help="Read the location's own API key from standard input."
    ),
    api_key_prompt: bool = typer.Option(
        False, "--api-key-prompt", help="Ask for the API key (input hidden)."
    ),
    cast_api_key: str | None = typer.Option(
        None,
        "--cast-api-key",
        help="Deprecated: a key on the command line leaks into shell history and `ps`. "
        "Use --gateway cast --api-key-stdin.",
        hidden=True,
    ),
    sender_id: str | None = typer.Option(None, "--sender-id", help="Sender ID to send with."),
    channel: str | None = typer.Option(None, "--channel", help="A channel the gateway has."),
    region: str | None = typer.Option(
        None, "--region", help="Default region for numbers without a country code, e.g. PH."
    ),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Check the key with the gateway before storing it."
    ),
    option: list[str] = typer.Option(
        [],
        "--setting",
        help="A gateway account setting, KEY=VALUE (repeatable), e.g. max_parts=2.",
    ),
) -> None:
    """Give a location its own gateway account, or change its sender, channel or region.

    Usage: echo "$KEY" | castbridge locations configure LOC --gateway cast --api-key-stdin
    """
    settings = settings_or_exit()
    api_key = _read_key(api_key_stdin, api_key_prompt)
    if cast_api_key is not None:
        err_console.print(
            "[yellow]warning[/yellow] --cast-api-key is deprecated (the key is visible in shell "
            "history and the process list); use --gateway cast --api-key-stdin",
            highlight=False,
        )
        api_key, gateway = cast_api_key, gateway or "cast"
    if gateway is not None and gateway not in names():
        fail(f"--gateway must be one of {', '.join(names())}")
    if region is not None and (len(region) != 2 or not region.isalpha()):
        fail("--region must be a two-letter region code such as PH")
    if sender_id is not None and not 1 <= len(sender_id) <= 20:
        fail("--sender-id must be 1 to 20 characters")
    options: dict[str, Any] = {}
    for item in option:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            fail(f"--setting must be KEY=VALUE, not {escape(item)!r}")
        try:
            options[key.strip()] = json.loads(raw)
        except ValueError:
            options[key.strip()] = raw
    if api_key is None and all(v is None for v in (sender_id, channel, region)):
        fail("nothing to change: give an API key (--api-key-stdin), --sender-id, ...")

    async def _go() -> Any:
        from castbridge.accounts import configure_location
        from castbridge.gateways.directory import GatewayDirectory
        from castbridge.limits import BlockingPacer, LocalPacer
        from castbridge.resources import open_store

        defaults = load_defaults(settings)
        async with open_store(settings) as opened, httpx2.AsyncClient(timeout=15.0) as http:
            directory = GatewayDirectory(
                defaults, http, BlockingPacer(LocalPacer()), opened.box, attempts=2
            )
            return await configure_location(
                opened.store,
                directory,
                settings,
                opened.box,
                location_id,
                gateway=gateway,
                api_key=api_key,
                sender_id=sender_id,
                channel=channel,
                region=region.upper() if region else None,
                options=options,
                verify=verify,
            )

    from castbridge.accounts import ConfigureError

    try:
        done = run(_go())
    except ConfigureError as exc:
        fail(escape(str(exc)))
    typer.echo(f"location {location_id} updated")
    if done.account_id is not None:
        typer.echo(f"account {done.account_id}; {done.repinned} queued message(s) moved to it")
    if done.webhooks:
        typer.echo(f"registered webhooks: {', '.join(done.webhooks)}")


@app.command("list")
def list_locations(as_json: bool = JsonOption) -> None:
    """Every configured location and the account it sends on (keys masked)."""
    settings = settings_or_exit()

    async def _go() -> list[dict[str, Any]]:
        from castbridge.resources import open_store
        from castbridge.store import accounts as account_store

        async with open_store(settings) as opened, opened.store.read() as session:
            rows = []
            for loc in await account_store.list_locations(session):
                account = (
                    await account_store.get(session, loc.account_id) if loc.account_id else None
                )
                key = ""
                if account is not None and account.api_key_enc:
                    key = mask_key(opened.box.decrypt(account.api_key_enc))
                rows.append(
                    {
                        "location": loc.location_id,
                        "account": account.id if account else "(default account)",
                        "gateway": account.gateway if account else settings.default_gateway,
                        "api_key": key or "(default)",
                        "state": account.state if account else "",
                        "sender_id": loc.sender_id
                        or (account.sender_id if account else None)
                        or "(default)",
                        "channel": loc.channel
                        or (account.channel if account else None)
                        or "(default)",
                        "region": loc.region or "(default)",
                        "updated": loc.updated_at.isoformat(timespec="seconds"),
                    }
                )
            return rows

    emit(run(_go()), as_json=as_json, title="locations")
